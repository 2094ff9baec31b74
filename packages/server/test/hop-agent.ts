/**
 * A hand-written agent side of the hop frame for unit tests: an in-memory
 * mux session pair, the agent end decoding each `hframe` stream with the
 * codec and handing every message to the test, which answers with
 * {@link respond} or raw bytes. Enough to test the server's frame client
 * without @tower/agent (which the server package cannot import).
 */
import { duplexPair } from 'node:stream'
import { Session, type MuxStream } from '@tower/mux'
import { HopDecoder, encodeDataHeader, encodeEnd, encodeResponseHead, encodePreamble, readPreamble, sessionOptions, type HopMessage } from '@tower/transport'

/** One agent-side stream and what it has received. */
export interface AgentStream {
  stream: MuxStream
  messages: HopMessage[]
  /** Set when the server reset the stream. */
  reset: boolean
  /** Set when the server ended (FIN) the stream. */
  ended: boolean
  /** Set once the stream closed. */
  closed: boolean
}

/** The pair: `session` is the server's end (it opens streams), `streams` the agent's view. */
export interface HopAgentPair {
  session: Session
  agentSession: Session
  streams: AgentStream[]
  /** Opens an `hframe` stream on the server end with its preamble, as TunnelPool.openOn does. */
  open: () => MuxStream
  /** Resolves once the agent side has `n` streams. */
  waitStreams: (n: number) => Promise<void>
}

/** `onMessage` sees each decoded message with its stream; the default answers 200 `ok` to every request END. */
export function hopAgentPair (onMessage: (s: AgentStream, m: HopMessage) => void = answerOk): HopAgentPair {
  const [near, far] = duplexPair()
  const session = new Session(near, { ...sessionOptions(), client: true })
  const agentSession = new Session(far, { ...sessionOptions(), client: false })
  const streams: AgentStream[] = []
  const waiters: Array<() => void> = []
  let seq = 0
  agentSession.on('stream', (stream: MuxStream) => {
    const s: AgentStream = { stream, messages: [], reset: false, ended: false, closed: false }
    streams.push(s)
    for (const w of waiters.splice(0)) w()
    stream.on('error', () => { s.reset = true })
    stream.on('close', () => { s.closed = true })
    readPreamble(stream, 5000).then(() => {
      const decoder = new HopDecoder()
      stream.on('data', (chunk: Buffer) => {
        for (const m of decoder.push(chunk)) {
          s.messages.push(m)
          onMessage(s, m)
        }
      })
      stream.on('end', () => { s.ended = true })
    }, () => stream.destroy())
  })
  return {
    session,
    agentSession,
    streams,
    open: () => {
      const stream = session.open()
      stream.write(encodePreamble({ kind: 'hframe', id: (++seq).toString(36) }))
      return stream
    },
    waitStreams: async (n) => {
      while (streams.length < n) await new Promise<void>((resolve) => waiters.push(resolve))
    }
  }
}

/** Sends a whole response: head, the body as DATA frames, END. */
export function respond (stream: MuxStream, status: number, headers: string[], body?: Buffer): void {
  stream.write(encodeResponseHead({ status, headers, body: body !== undefined && body.length > 0 }))
  if (body !== undefined && body.length > 0) {
    for (let off = 0; off < body.length; off += 65536) {
      const piece = body.subarray(off, off + 65536)
      stream.write(encodeDataHeader(piece.length))
      stream.write(piece)
    }
  }
  stream.write(encodeEnd())
}

/** Answers 200 `ok` once the request's END arrived. */
export function answerOk (s: AgentStream, m: HopMessage): void {
  if (m.type === 'end') respond(s.stream, 200, ['content-type', 'text/plain', 'content-length', '2'], Buffer.from('ok'))
}
