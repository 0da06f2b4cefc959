import { defineConfig } from 'vite'

// The dev server proxies the API and the WebSocket to a running `lectern serve`, so the
// app is same-origin in development as it is when the binary serves `dist/`.
const target = process.env.LECTERN_URL ?? 'http://127.0.0.1:8080'

export default defineConfig({
  base: '/',
  resolve: {
    // `@lectern/client` is linked from ../client-sdk, which has its own node_modules: one
    // copy of yjs (and its helpers) must be bundled, or documents silently diverge.
    dedupe: ['yjs', 'y-websocket', 'y-protocols', 'lib0']
  },
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { chunkSizeWarningLimit: 600, outDir: 'dist', emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      '/api': { target },
      '/ws': { target: target.replace(/^http/, 'ws'), ws: true }
    }
  }
})
