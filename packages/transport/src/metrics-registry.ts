/**
 * What the server's and the agent's Prometheus metrics share: a Registry of
 * their own with the default process metrics on it, and the names a scrape
 * of a registry shows (the dashboard test and the metric tests compare
 * them with what is exported).
 */
import { Registry, collectDefaultMetrics } from 'prom-client'

/** A Registry with the default process metrics (`process_*`, `nodejs_*`) on it; what the CLI passes. Never the global default. */
export function createMetricsRegistry (): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  return registry
}

/** The names a scrape of `registry` shows: histograms with `_bucket`, `_sum`, `_count`, summaries with `_sum`, `_count`. */
export function exposedNames (registry: Registry): string[] {
  const out: string[] = []
  for (const m of registry.getMetricsAsArray()) {
    const { name, type } = m as unknown as { name: string, type: string }
    if (type === 'histogram') out.push(`${name}_bucket`, `${name}_sum`, `${name}_count`)
    else if (type === 'summary') out.push(name, `${name}_sum`, `${name}_count`)
    else out.push(name)
  }
  return out
}
