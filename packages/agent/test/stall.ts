/** Resolves once `read()` has not changed for `quietMs`; rejects after `deadlineMs`. */
export async function waitForStall (read: () => number, quietMs = 300, deadlineMs = 30_000): Promise<number> {
  const start = Date.now()
  let last = read()
  let since = Date.now()
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    const now = read()
    if (now !== last) {
      last = now
      since = Date.now()
    } else if (Date.now() - since >= quietMs) {
      return now
    }
    if (Date.now() - start > deadlineMs) throw new Error(`no stall within ${deadlineMs} ms (value ${now})`)
  }
}
