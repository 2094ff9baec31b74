/**
 * A lock file that names its holder, for locks shared by processes on one
 * machine (the state lock, the server lock).
 *
 * The file holds `<pid> <nonce>`. It is created whole with link(2), which
 * fails with EEXIST when the lock exists, so a reader never sees half a
 * file. A lock whose holder process is gone is stale. Taking over a stale
 * lock must not let two processes both win: each renames the lock file to a
 * name of its own (rename is atomic, so only one rename moves a given file),
 * then checks it moved the very file it judged stale (same inode). A process
 * that moved a fresh lock instead, one a faster process made in between,
 * links it back and tries again.
 */
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'

/** What a lock attempt found. */
export type LockAttempt = { acquired: true } | { acquired: false, holderPid: number | undefined }

interface Held { ino: number, text: string, pid: number | undefined }

// Locks held by this process, by file content: another instance in this
// process holding a lock is alive; our pid with a content not in here is a
// former process that had this pid.
const heldHere = new Set<string>()

/** One lock file, as seen by this process. */
export class PidLock {
  /** Path of the lock file. */
  readonly path: string
  readonly #token = `${process.pid} ${randomBytes(8).toString('hex')}\n`

  constructor (file: string) {
    this.path = file
  }

  /** True while this instance holds the lock. */
  get held (): boolean {
    return this.#read()?.text === this.#token
  }

  /** Takes the lock if it is free or stale; never waits. Throws only on I/O errors other than EEXIST/ENOENT. */
  tryAcquire (): LockAttempt {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (this.#create()) {
        heldHere.add(this.#token)
        return { acquired: true }
      }
      const held = this.#read()
      if (held === undefined) continue // released meanwhile
      if (held.text === this.#token) return { acquired: true }
      if (this.#alive(held)) return { acquired: false, holderPid: held.pid }
      this.#takeOver(held)
    }
    return { acquired: false, holderPid: this.#read()?.pid }
  }

  /** The pid of the live process holding the lock, or undefined when it is free or stale. */
  holderPid (): number | undefined {
    const held = this.#read()
    if (held === undefined) return undefined
    if (held.text === this.#token) return process.pid
    return this.#alive(held) ? held.pid : undefined
  }

  /** Removes the lock file if, and only if, this instance holds it. */
  release (): void {
    if (!this.held) return
    fs.rmSync(this.path, { force: true })
    heldHere.delete(this.#token)
  }

  #create (): boolean {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    fs.writeFileSync(tmp, this.#token, { mode: 0o600 })
    try {
      fs.linkSync(tmp, this.path)
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw err
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  }

  #read (): Held | undefined {
    let fd: number
    try {
      fd = fs.openSync(this.path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    try {
      const ino = fs.fstatSync(fd).ino
      const buf = Buffer.alloc(128)
      const n = fs.readSync(fd, buf, 0, buf.length, 0)
      const text = buf.subarray(0, n).toString('utf8')
      const m = /^(\d{1,10}) [0-9a-f]+\n$/.exec(text)
      return { ino, text, pid: m === null ? undefined : Number(m[1]) }
    } finally {
      fs.closeSync(fd)
    }
  }

  #alive (held: Held): boolean {
    const pid = held.pid
    // Garbage in the file: nobody can be holding it.
    if (pid === undefined || pid === 0) return false
    if (pid === process.pid) return heldHere.has(held.text)
    return processAlive(pid)
  }

  #takeOver (stale: Held): void {
    const aside = `${this.path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`
    try {
      fs.renameSync(this.path, aside)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    try {
      if (fs.statSync(aside).ino !== stale.ino) {
        // We moved a lock another process just made: give it back.
        try { fs.linkSync(aside, this.path) } catch { /* a third process took the name: it holds the lock */ }
      }
    } finally {
      fs.rmSync(aside, { force: true })
    }
  }
}

/** True when a process of that pid exists (signal 0 reaches it, or it belongs to another user). */
export function processAlive (pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
