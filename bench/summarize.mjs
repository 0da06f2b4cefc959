// Medians of lectern-bench JSON lines, per scenario and server, and the ratio Lectern/peer.
//   node bench/summarize.mjs DIR      (DIR holds <scenario>.<server>.jsonl from compare.sh)
// Plain Node, no dependencies.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
if (!dir) {
  console.error('usage: node bench/summarize.mjs DIR')
  process.exit(2)
}

// [label, path into result, unit, which way is better]
const steady = [
  ['connect+sync p50', 'connect_sync.p50_ms', 'ms', 'lower'],
  ['connect+sync p99', 'connect_sync.p99_ms', 'ms', 'lower'],
  ['fan-out p50', 'fanout.p50_ms', 'ms', 'lower'],
  ['fan-out p99', 'fanout.p99_ms', 'ms', 'lower'],
  ['fan-out max', 'fanout.max_ms', 'ms', 'lower'],
  ['delivered', 'delivered_per_sec', '/s', 'higher'],
  ['deliveries per core-second', 'server.deliveries_per_core_s', '', 'higher'],
  ['server cores', 'server.cores', '', 'lower'],
  ['server RSS baseline', 'server.rss_baseline_kb', 'KiB', 'lower'],
  ['server RSS peak', 'server.rss_peak_kb', 'KiB', 'lower'],
  ['RSS per room', 'server.rss_per_room_kb', 'KiB', 'lower'],
  ['generator cores', 'generator_cores', '', '-'],
]
const figures = {
  steady,
  saturate: [
    ['knee deliveries/s', 'knee_delivered_per_sec', '/s', 'higher'],
    ['knee deliveries per core-second', 'knee_deliveries_per_core_s', '', 'higher'],
    ['steps run', 'steps.length', '', '-'],
  ],
  'join-storm': [
    ['all received', 'all_received_s', 's', 'lower'],
    ['per client p50', 'per_client.p50_ms', 'ms', 'lower'],
    ['per client p99', 'per_client.p99_ms', 'ms', 'lower'],
    ['server RSS before', 'server.rss_before_kb', 'KiB', 'lower'],
    ['server RSS peak', 'server.rss_peak_kb', 'KiB', 'lower'],
    ['server RSS peak - before', 'server.rss_delta_kb', 'KiB', 'lower'],
    ['server CPU during storm', 'server.cpu_s', 's', 'lower'],
    ['state (step 2) size', 'state_bytes', 'B', 'lower'],
  ],
}

const get = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj)
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
const fmt = (x) => (x == null ? 'n/a' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3))
const ok = (mode, r) => (mode === 'steady' ? r.convergence?.converged : mode === 'join-storm' ? r.converged : r.knee != null)

// scenario -> server -> [result]
const runs = {}
for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()) {
  const [scenario, server] = file.replace(/\.jsonl$/, '').split('.')
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
    if (!line.trim()) continue
    let j
    try { j = JSON.parse(line) } catch { continue }
    ;((runs[scenario] ??= {})[server] ??= []).push(j)
  }
}

const order = ['lectern', 'yws', 'hocuspocus']
for (const [scenario, byServer] of Object.entries(runs)) {
  const servers = order.filter((s) => byServer[s]).concat(Object.keys(byServer).filter((s) => !order.includes(s)))
  const mode = byServer[servers[0]][0].mode
  const peers = servers.filter((s) => s !== 'lectern')
  const header = ['figure', 'better', ...servers.map((s) => `${s} (median of ${byServer[s].length})`),
    ...(byServer.lectern ? peers.map((p) => `lectern/${p}`) : [])]
  const rows = []
  for (const [label, path, unit, better] of figures[mode] ?? []) {
    const med = Object.fromEntries(servers.map((s) => [s, median(byServer[s].map((j) => get(j.result, path)))]))
    rows.push([`${label}${unit ? ` (${unit})` : ''}`, better, ...servers.map((s) => fmt(med[s])),
      ...(byServer.lectern ? peers.map((p) => (med.lectern != null && med[p] ? (med.lectern / med[p]).toFixed(2) : 'n/a')) : [])])
  }
  rows.push(['runs that converged', 'higher', ...servers.map((s) => `${byServer[s].filter((j) => ok(mode, j.result)).length}/${byServer[s].length}`),
    ...(byServer.lectern ? peers.map(() => '') : [])])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => '| ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |'
  console.log(`\n### ${scenario} (${mode})\n`)
  console.log(line(header))
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const r of rows) console.log(line(r))
}
