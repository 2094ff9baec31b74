/**
 * A lock file that names its holder, for locks shared by processes on one
 * machine (the state lock, the server lock).
 *
 * The file holds `<pid> <nonce>`. It is created whole with link(2), which
 * fails with EEXIST when the lock exists, so a reader never sees half a
 * file. A lock whose holder process is gone is stale. Taking over a stale
 * lock must not let two processes both win, and must never remove a fresh
 * lock: a process that moved a fresh lock aside, even for a moment, would
 * let a third create one while the first still believes it holds the lock.
 * So stale locks are removed only under a takeover guard (`<lock>.takeover`,
 * created the same exclusive way and held for two system calls): under it,
 * no other process removes the lock file, and a dead holder releases
 * nothing, so the file still there with the inode and content judged stale
 * is the stale one. After removing it the process competes with everyone
 * else to create the lock, and link(2) lets exactly one win.
 */
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'

/** What a lock attempt found. */
export type LockAttempt = { acquired: true } | { acquired: false, holderPid: number | undefined }

interface Held { ino: number, text: string, pid: number | undefined }

/** How long a process waits for another's takeover guard, in milliseconds (it is held for two system calls). */
const GUARD_WAIT_MS = 200

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
    return createExclusive(this.path, this.#token)
  }

  #read (): Held | undefined {
    return readHeld(this.path)
  }

  #alive (held: Held): boolean {
    const pid = held.pid
    // Garbage in the file: nobody can be holding it.
    if (pid === undefined || pid === 0) return false
    if (pid === process.pid) return heldHere.has(held.text)
    return processAlive(pid)
  }

  #takeOver (stale: Held): void {
    const guard = `${this.path}.takeover`
    if (!this.#enterGuard(guard)) return
    try {
      const now = this.#read()
      if (now !== undefined && now.ino === stale.ino && now.text === stale.text) fs.rmSync(this.path, { force: true })
    } finally {
      if (readHeld(guard)?.text === this.#token) fs.rmSync(guard, { force: true })
    }
  }

  // Takes the takeover guard, waiting out a live holder briefly. A guard
  // left by a dead process is moved aside and checked by inode, the way
  // locks once were: its narrow race needs a process to die inside the guard.
  #enterGuard (guard: string): boolean {
    const deadline = Date.now() + GUARD_WAIT_MS
    for (;;) {
      if (createExclusive(guard, this.#token)) return true
      const held = readHeld(guard)
      if (held !== undefined && !this.#alive(held)) {
        removeIfSame(guard, held)
        continue
      }
      if (Date.now() > deadline) return false
      if (held !== undefined) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }
}

// Creates `file` holding `text` if it does not exist; false when it does.
function createExclusive (file: string, text: string): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  try {
    fs.linkSync(tmp, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  } finally {
    fs.rmSync(tmp, { force: true })
  }
}

function readHeld (file: string): Held | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
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

// Removes `file` if it is still the one read as `seen` (same inode); one made meanwhile is put back.
function removeIfSame (file: string, seen: Held): void {
  const aside = `${file}.stale.${process.pid}.${randomBytes(4).toString('hex')}`
  try {
    fs.renameSync(file, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  try {
    if (fs.statSync(aside).ino !== seen.ino) {
      try { fs.linkSync(aside, file) } catch { /* a third process took the name: it holds the guard */ }
    }
  } finally {
    fs.rmSync(aside, { force: true })
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
