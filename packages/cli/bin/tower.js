#!/usr/bin/env -S node --experimental-strip-types --min-semi-space-size=8
// Entry point for `tower`: Node runs the TypeScript sources directly (type
// stripping; on by default from Node 22.18, the flag covers 22.12-22.17),
// with the GC launch flags of src/gc-flags.ts.
import '../src/main.ts'
