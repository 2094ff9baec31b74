/**
 * Seeded randomness for the soak: one seed decides the fault schedule, its targets and the payloads, so a
 * failing run can be repeated with `--seed S`. mulberry32 is enough: the point is repeatability, not
 * unpredictability.
 */
import { createHash } from 'node:crypto'

/** A seeded pseudo-random source. */
export class Rng {
  #state: number

  /** @param seed any 32-bit integer */
  constructor (seed: number) {
    this.#state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next (): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Integer in [min, max]. */
  int (min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  /** One element of a non-empty array. */
  pick<T> (items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<T> (items: readonly T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      ;[out[i], out[j]] = [out[j]!, out[i]!]
    }
    return out
  }

  /** `n` seeded bytes. */
  bytes (n: number): Buffer {
    const out = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i += 4) {
      const v = Math.floor(this.next() * 4294967296)
      for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = (v >>> (8 * k)) & 0xff
    }
    return out
  }
}

/** Size of one chunk of a {@link DeterministicStream}. */
export const CHUNK_BYTES = 64 * 1024

/**
 * Bytes that are a pure function of (seed, offset): chunk i is a seeded 64 KiB block rotated by a
 * per-chunk amount with i written into its first 8 bytes, so a lost, duplicated or reordered chunk
 * changes the hash even though the block repeats. Cheap enough to serve and re-hash 100 MB.
 */
export class DeterministicStream {
  #block: Buffer
  #hashes = new Map<number, string>()

  constructor (seed: number) {
    this.#block = new Rng(seed ^ 0x5eed).bytes(CHUNK_BYTES * 2)
  }

  /** Chunk `i` (a fresh buffer of CHUNK_BYTES). */
  chunk (i: number): Buffer {
    const start = (i * 7919) % CHUNK_BYTES
    const out = Buffer.from(this.#block.subarray(start, start + CHUNK_BYTES))
    out.writeBigUInt64BE(BigInt(i), 0)
    return out
  }

  /** sha256 (hex) of the first `size` bytes; computed once per size. */
  sha256 (size: number): string {
    let h = this.#hashes.get(size)
    if (h === undefined) {
      const hash = createHash('sha256')
      for (let i = 0, left = size; left > 0; i++, left -= CHUNK_BYTES) {
        const c = this.chunk(i)
        hash.update(left >= CHUNK_BYTES ? c : c.subarray(0, left))
      }
      h = hash.digest('hex')
      this.#hashes.set(size, h)
    }
    return h
  }
}
