#!/usr/bin/env node
// Entry point for `tower`: Node 24 runs the TypeScript sources directly.
import '../src/main.ts'
