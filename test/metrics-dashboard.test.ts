/**
 * deploy/grafana/tower-dashboard.json names only metrics Tower exports: every
 * metric name in every PromQL expression is one the server or the agent
 * registers (read from their metrics modules, default process metrics
 * included), and every exported Tower metric is on some panel.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { serverMetricNames } from '@tower/server'
import { agentMetricNames } from '@tower/agent'

const DASHBOARD = path.resolve(import.meta.dirname, '../deploy/grafana/tower-dashboard.json')

// PromQL words that look like identifiers but are not metrics.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/** Metric names in a PromQL expression: identifiers followed by `{`, `[`, an operator, `)`, `,` or the end — never by `(` (a function). */
export function metricNames (expr: string): string[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // string literals
    .replace(/\{[^}]*\}/g, '{}') // label matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
    .replace(/\[[^\]]*\]/g, '[]') // range durations
  const out: string[] = []
  const re = /(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[{[)+\-*/%^=!<>,]|$)/g
  for (const m of text.matchAll(re)) {
    const name = m[1]!
    if (KEYWORDS.has(name.toLowerCase())) continue
    out.push(name)
  }
  return out
}

function expressions (): string[] {
  const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ targets?: Array<{ expr?: string }>, panels?: unknown[] }> }
  const out: string[] = []
  const walk = (panels: Array<{ targets?: Array<{ expr?: string }>, panels?: unknown[] }>): void => {
    for (const p of panels) {
      for (const target of p.targets ?? []) if (typeof target.expr === 'string') out.push(target.expr)
      if (Array.isArray(p.panels)) walk(p.panels as typeof panels)
    }
  }
  walk(dash.panels)
  return out
}

test('the metric-name extractor finds metrics and skips functions, labels and keywords', () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, verb) (rate(tower_server_request_duration_seconds_bucket{cluster=~"$cluster",verb!~"watch|connect"}[5m])))'), ['tower_server_request_duration_seconds_bucket'])
  assert.deepEqual(metricNames('sum(rate(a_total{code=~"5.."}[5m])) / sum(rate(b_total[5m]))'), ['a_total', 'b_total'])
  assert.deepEqual(metricNames('up == 1 and on (pod) c_bytes'), ['up', 'c_bytes'])
  assert.deepEqual(metricNames('process_resident_memory_bytes'), ['process_resident_memory_bytes'])
})

test('every PromQL expression of the dashboard names metrics the server or the agent exports', () => {
  const exported = new Set([...serverMetricNames(), ...agentMetricNames()])
  const exprs = expressions()
  assert.ok(exprs.length >= 20, `only ${exprs.length} expressions`)
  const used = new Set<string>()
  for (const expr of exprs) {
    const names = metricNames(expr)
    assert.ok(names.length > 0, `no metric in ${expr}`)
    for (const name of names) {
      assert.ok(exported.has(name), `${name} (in ${expr}) is not exported by the server or the agent`)
      used.add(name.replace(/_(bucket|sum|count)$/, ''))
    }
  }
  // And the other way: each Tower metric has a panel.
  for (const name of exported) {
    if (!name.startsWith('tower_')) continue
    const base = name.replace(/_(bucket|sum|count)$/, '')
    assert.ok(used.has(base) || used.has(name), `${name} is on no panel`)
  }
})
