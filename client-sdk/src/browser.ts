/**
 * The entry of the browser build (`dist/browser/lectern-client.js`, built by
 * `scripts/build-browser.mjs`): the whole SDK plus the `yjs` and `y-websocket` it was
 * bundled with, so a page without a bundler uses one copy of each.
 *
 * API boundary: a page must build its `Y.Doc`s with the `Y` exported here; a `Y.Doc` from
 * another copy of yjs is refused by `openDocument` (they would silently diverge).
 */
export * from './index.js'
export * as Y from 'yjs'
export { WebsocketProvider } from 'y-websocket'
