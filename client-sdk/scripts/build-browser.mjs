// Builds dist/browser/lectern-client.js: one ESM file for pages without a bundler, with
// yjs and y-websocket bundled in (see the README, "In a browser without a bundler").
import { build } from 'esbuild'

await build({
  entryPoints: ['src/browser.ts'],
  outfile: 'dist/browser/lectern-client.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  logLevel: 'warning'
})
