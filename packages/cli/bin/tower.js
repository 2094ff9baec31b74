#!/usr/bin/env -S node --experimental-strip-types
// Entry point for `tower`: Node runs the TypeScript sources directly (type
// stripping; on by default from Node 22.18, the flag covers 22.12-22.17).
import '../src/main.ts'
