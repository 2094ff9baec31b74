/**
 * The admission bucket and the turns it hands to the agents it sends away,
 * on an injected clock.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AdmissionLimiter, MAX_RETRY_AFTER_S } from '../src/admission.ts'

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

test('a crowd sent away gets turns at the admission rate, the first when the bucket next holds a token', () => {
  const c = clock()
  const limiter = new AdmissionLimiter(200, 200, c.now)
  let admitted = 0
  for (let i = 0; i < 200; i++) if (limiter.take()) admitted++
  assert.equal(admitted, 200, 'the burst is admitted at once')
  assert.equal(limiter.take(), false)
  // 5,000 more agents at the same instant: turns 5 ms apart, so 200 per second of Retry-After
  const turns = Array.from({ length: 5000 }, () => limiter.turn())
  const perSecond = new Map<number, number>()
  for (const s of turns) perSecond.set(s, (perSecond.get(s) ?? 0) + 1)
  assert.equal(turns[0], 1)
  assert.equal(turns.at(-1), 25)
  for (let s = 1; s <= 25; s++) assert.equal(perSecond.get(s), 200, `second ${s}: ${perSecond.get(s) ?? 0} turns`)
})

test('turns are capped at a minute, and start over once the backlog has passed', () => {
  const c = clock()
  const limiter = new AdmissionLimiter(1, 1, c.now)
  limiter.take()
  const turns = Array.from({ length: 100 }, () => limiter.turn())
  assert.equal(Math.max(...turns), MAX_RETRY_AFTER_S)
  assert.equal(turns.filter((s) => s === MAX_RETRY_AFTER_S).length, 41, 'turns 60 to 100 all wait the cap')
  c.advance(61_000)
  assert.equal(limiter.take(), true, 'the bucket refilled')
  assert.equal(limiter.turn(), 1, 'an empty backlog: the next turn is when the bucket refills')
})

test('a turn handed while tokens are left (a draining server) is still spread, and time moves the queue', () => {
  const c = clock()
  const limiter = new AdmissionLimiter(10, 50, c.now)
  assert.deepEqual([limiter.turn(), limiter.turn()], [1, 1])
  for (let i = 0; i < 18; i++) limiter.turn()
  assert.equal(limiter.turn(), 2, 'the 21st turn is 2 s away: ten per second')
  c.advance(1500)
  assert.equal(limiter.turn(), 1, 'after 1.5 s the 22nd turn is 0.6 s away')
})

test('with no limit every turn is one second away', () => {
  const limiter = new AdmissionLimiter(0, 1)
  assert.equal(limiter.take(), true)
  assert.deepEqual([limiter.turn(), limiter.turn(), limiter.turn()], [1, 1, 1])
})
