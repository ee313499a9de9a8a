#!/usr/bin/env node
// A committed entry point: pnpm links bins at install time, before dist/ is built, and skips a
// bin whose file does not exist yet. This file always exists; the CLI itself is built into dist/.
import '../dist/cli.js';
