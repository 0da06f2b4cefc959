// A TCP load balancer for tests with several nodes, shared by tests/node and the SDK's
// tests (client-sdk/test imports it from here). Node built-ins only.

import { once } from 'node:events'
import { createServer, connect as netConnect } from 'node:net'

/**
 * A minimal TCP load balancer in front of `servers` (objects with an `address`
 * `host:port`): each connection goes to the first server that accepts it, in order, the way
 * HAProxy retries a refused connection on another server (`option redispatch`). A node
 * that received SIGTERM has closed its listener, so new connections move on to the next.
 */
export async function startBalancer (servers) {
  const sockets = new Set()
  const track = socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  }
  const balancer = createServer(downstream => {
    track(downstream)
    downstream.on('error', () => {})
    const tryServer = index => {
      if (index >= servers.length) {
        downstream.destroy()
        return
      }
      const [host, port] = servers[index].address.split(':')
      const upstream = netConnect({ host, port: Number(port) })
      upstream.once('error', () => tryServer(index + 1))
      upstream.once('connect', () => {
        upstream.removeAllListeners('error')
        track(upstream)
        upstream.on('error', () => downstream.destroy())
        downstream.on('error', () => upstream.destroy())
        // Each side's end (FIN) is passed on; a reset tears down both.
        downstream.pipe(upstream)
        upstream.pipe(downstream)
      })
    }
    tryServer(0)
  })
  balancer.listen(0, '127.0.0.1')
  await once(balancer, 'listening')
  const address = `127.0.0.1:${balancer.address().port}`
  return {
    address,
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    close () {
      balancer.close()
      for (const socket of sockets) socket.destroy()
    }
  }
}
