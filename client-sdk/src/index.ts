/**
 * `@lectern/client`: the TypeScript client of Lectern.
 *
 * # Layout
 * - `client.ts`: `LecternClient`, the REST API with token rotation.
 * - `errors.ts`: `LecternError` and the stable `ERROR_CODES`; `AccessError` (a realtime
 *   document refused).
 * - `types.ts`: the wire types, and `WIRE_SCHEMAS` / `WIRE_ENUMS` the contract test checks
 *   against the server's OpenAPI document.
 * - `realtime.ts`: `openDocument`, a y-websocket provider that handles tokens and close codes.
 * - `documents.ts`: typed readers of the feed, chat, mind map and AI-made template
 *   documents, AI attribution, `watchJob`.
 * - `socket.ts`: `LecternSocket`, many documents (and AI control messages) on one socket.
 * - `presence.ts`: `presence`, who is here (name, colour, idle) over awareness.
 * - `browser.ts`: the entry of the browser build (this module plus the bundled yjs and
 *   y-websocket); not part of this module.
 */
export * from './errors.js'
export * from './types.js'
export * from './client.js'
export * from './realtime.js'
export * from './documents.js'
export * from './presence.js'
export * from './socket.js'
