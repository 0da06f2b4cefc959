/**
 * `@lectern/client`: the TypeScript client of Lectern.
 *
 * # Layout
 * - `client.ts`: `LecternClient`, the REST API with token rotation.
 * - `errors.ts`: `LecternError` and the stable `ERROR_CODES`.
 * - `types.ts`: the wire types, and `WIRE_SCHEMAS` / `WIRE_ENUMS` the contract test checks
 *   against the server's OpenAPI document.
 * - `realtime.ts`: `openDocument`, a y-websocket provider that handles tokens and close codes.
 * - `documents.ts`: typed readers of the feed and chat documents, AI attribution, `watchJob`.
 */
export * from './errors.js'
export * from './types.js'
export * from './client.js'
export * from './realtime.js'
export * from './documents.js'
