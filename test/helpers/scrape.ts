/**
 * Scrapes a Prometheus endpoint over real HTTP and parses the text
 * exposition format, line by line (prom-client has no parser).
 */
import http from 'node:http'
import { once } from 'node:events'

/** One sample line. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parsed samples, with lookups. */
export class Scrape {
  readonly samples: Sample[]
  /** Metric names declared by `# TYPE` lines, with their type. */
  readonly types: Map<string, string>

  constructor (text: string) {
    this.samples = []
    this.types = new Map()
    for (const line of text.split('\n')) {
      if (line === '') continue
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line)
      if (type !== null) { this.types.set(type[1]!, type[2]!); continue }
      if (line.startsWith('#')) continue
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line)
      if (m === null) throw new Error(`not an exposition line: ${JSON.stringify(line)}`)
      const labels: Record<string, string> = Object.create(null)
      const body = m[2] ?? ''
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g
      let lm: RegExpExecArray | null
      let consumed = 0
      while ((lm = re.exec(body)) !== null) {
        labels[lm[1]!] = lm[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
        consumed += lm[0].length
      }
      if (consumed !== body.length) throw new Error(`bad labels: ${JSON.stringify(line)}`)
      const v = m[3]!
      this.samples.push({ name: m[1]!, labels, value: v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v) })
    }
  }

  /** Sum of the samples of `name` whose labels include `labels`. */
  value (name: string, labels: Record<string, string> = {}): number {
    let sum = 0
    for (const s of this.find(name, labels)) sum += s.value
    return sum
  }

  /** Samples of `name` whose labels include `labels`. */
  find (name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  }

  /** Whether `name` is declared (a `# TYPE` line) — a metric with no series yet still is. */
  has (name: string): boolean {
    return this.types.has(name)
  }
}

/** GETs `path` on 127.0.0.1:`port`. */
export async function httpGet (port: number, path: string, method = 'GET'): Promise<{ status: number, body: string, headers: http.IncomingHttpHeaders }> {
  const req = http.request({ host: '127.0.0.1', port, path, method })
  req.end()
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }
}

/** Scrapes `/metrics` on 127.0.0.1:`port`. */
export async function scrape (port: number): Promise<Scrape> {
  const r = await httpGet(port, '/metrics')
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return new Scrape(r.body)
}
