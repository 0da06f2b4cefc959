// Medians of a bench/cluster.sh run: one node against two nodes through Redis, the
// reconvergence after a Redis outage and Redis memory per live room, against the targets of
// issue #11. Every median is followed by the runs it comes from.
//   node bench/cluster-summary.mjs DIR
// Plain Node, no dependencies.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2]
if (!dir) {
  console.error('usage: node bench/cluster-summary.mjs DIR')
  process.exit(2)
}

const get = (obj, path) => path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj)
const numbers = (xs) => xs.filter((x) => typeof x === 'number' && Number.isFinite(x))
const median = (xs) => {
  const v = numbers(xs).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
const fmt = (x) => (x == null ? 'n/a' : Number.isInteger(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3))
const cell = (xs) => {
  const m = median(xs)
  return m == null ? 'n/a' : `${fmt(m)} (${xs.map(fmt).join(', ')})`
}
const table = (header, rows) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => '| ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |'
  console.log(line(header))
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
  for (const r of rows) console.log(line(r))
}
const readJsonl = (file) => {
  let text
  try { text = readFileSync(join(dir, file), 'utf8') } catch { return [] }
  return text.split('\n').filter((l) => l.trim()).flatMap((l) => {
    try { return [JSON.parse(l).result] } catch { return [] }
  })
}

// --- (a) and (b): steady loads ------------------------------------------------------------
// [label, value of one run, which way is better, how two nodes compare with one, target]
const redisCores = (r) => (r.server?.pids?.length > 1 ? r.server.cores_each?.at(-1) : undefined)
const steadyFigures = [
  ['fan-out p50 (ms)', (r) => get(r, 'fanout.p50_ms'), 'delta', 1],
  ['fan-out p99 (ms)', (r) => get(r, 'fanout.p99_ms'), 'delta', 2],
  ['fan-out max (ms)', (r) => get(r, 'fanout.max_ms'), 'delta'],
  ['  same-node p50 / p99 (ms)', (r) => [get(r, 'fanout_same_node.p50_ms'), get(r, 'fanout_same_node.p99_ms')], 'pair'],
  ['  cross-node p50 / p99 (ms)', (r) => [get(r, 'fanout_cross_node.p50_ms'), get(r, 'fanout_cross_node.p99_ms')], 'pair'],
  ['delivered (/s)', (r) => r.delivered_per_sec, 'ratio'],
  ['server cores (all processes)', (r) => get(r, 'server.cores'), 'ratio'],
  ['  of which redis-server', redisCores, ''],
  ['deliveries per core-second', (r) => get(r, 'server.deliveries_per_core_s'), 'ratio', 0.75],
  ['generator cores', (r) => r.generator_cores, ''],
  ['generator lag p99 (ms)', (r) => get(r, 'generator_lag.p99_ms'), ''],
]
for (const scenario of ['steady-1x50', 'steady-200x2']) {
  const one = readJsonl(`${scenario}.one-node.jsonl`)
  const two = readJsonl(`${scenario}.two-nodes.jsonl`)
  if (one.length + two.length === 0) continue
  console.log(`\n### ${scenario}: one node vs two nodes through Redis\n`)
  const rows = []
  for (const [label, value, compare, target] of steadyFigures) {
    if (compare === 'pair') {
      const pair = (runs, i) => cell(runs.map((r) => value(r)?.[i]))
      const show = (runs) => (numbers(runs.map((r) => value(r)?.[0])).length ? `${pair(runs, 0)} / ${pair(runs, 1)}` : '-')
      rows.push([label, show(one), show(two), '', ''])
      continue
    }
    const a = one.map(value)
    const b = two.map(value)
    const ma = median(a)
    const mb = median(b)
    let cmp = ''
    let verdict = ''
    if (ma != null && mb != null && compare === 'delta') {
      const d = mb - ma
      cmp = `${d >= 0 ? '+' : ''}${fmt(d)} ms`
      if (target != null) verdict = `≤ +${target} ms: ${d <= target ? 'met' : 'missed'}`
    } else if (ma != null && mb != null && compare === 'ratio' && ma !== 0) {
      cmp = `× ${(mb / ma).toFixed(2)}`
      if (target != null) verdict = `≥ × ${target}: ${mb / ma >= target ? 'met' : 'missed'}`
    }
    rows.push([label, numbers(a).length ? cell(a) : '-', numbers(b).length ? cell(b) : '-', cmp, verdict])
  }
  const converged = (runs) => `${runs.filter((r) => r.convergence?.converged).length}/${runs.length}`
  rows.push(['runs that converged', converged(one), converged(two), '', ''])
  table(['figure', 'one node: median (runs)', 'two nodes: median (runs)', 'two vs one', 'target'], rows)
}

// --- (c) reconvergence and (d) Redis memory ----------------------------------------------------
const rec = readJsonl('reconverge.two-nodes.jsonl')
if (rec.length) {
  console.log('\n### Redis outage of 5 s under light load, 200 live rooms (two nodes)\n')
  const all = rec.map((r) => r.all_rooms_s)
  const rows = [
    ['all rooms agree, from restart launched (s)', cell(all), `< 2 s: ${median(all) != null && median(all) < 2 ? 'met' : 'missed'}`],
    ['all rooms agree, from Redis answering (s)', cell(rec.map((r) => r.all_rooms_after_up_s)), ''],
    ['per room p50 / p99 (ms)', `${cell(rec.map((r) => r.reconverge?.p50_ms))} / ${cell(rec.map((r) => r.reconverge?.p99_ms))}`, ''],
    ['Redis restart until it answered (s)', cell(rec.map((r) => r.start_cmd_s)), ''],
    ['outage (s)', cell(rec.map((r) => r.outage_s)), ''],
    ['deliveries during the outage', cell(rec.map((r) => r.deliveries_during_outage)), '0: the nodes were cut apart'],
    ['fan-out p50 / p99 before the outage (ms)', `${cell(rec.map((r) => r.fanout_before?.p50_ms))} / ${cell(rec.map((r) => r.fanout_before?.p99_ms))}`, ''],
    ['runs converged, documents identical', `${rec.filter((r) => r.convergence?.converged).length}/${rec.length}, ${rec.filter((r) => r.convergence?.docs_identical).length}/${rec.length}`, 'nothing lost'],
  ]
  table(['figure', 'median (runs)', 'target / meaning'], rows)
}

const memory = readdirSync(dir).filter((f) => f.startsWith('memory-live.')).sort().map((f) => {
  const kv = Object.fromEntries(readFileSync(join(dir, f), 'utf8').split('\n')
    .map((l) => l.split(':')).filter((p) => p.length === 2).map(([k, v]) => [k, Number(v)]))
  return kv
}).filter((m) => Number.isFinite(m.used_memory) && Number.isFinite(m.idle_used_memory))
if (memory.length) {
  const rooms = 200
  const per = memory.map((m) => (m.used_memory - m.idle_used_memory) / rooms)
  console.log('\n### Redis memory per live room (test-owned Redis, 200 rooms on two nodes)\n')
  table(['figure', 'median (runs)', 'target'], [
    ['used_memory idle (B)', cell(memory.map((m) => m.idle_used_memory)), ''],
    ['used_memory, 200 live rooms (B)', cell(memory.map((m) => m.used_memory)), ''],
    ['per live room (B)', cell(per), `< 2048 B: ${median(per) < 2048 ? 'met' : 'missed'}`],
    ['shard channels / channels / keys', `${cell(memory.map((m) => m.shard_channels))} / ${cell(memory.map((m) => m.channels))} / ${cell(memory.map((m) => m.keys))}`, ''],
  ])
}
