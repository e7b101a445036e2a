#!/usr/bin/env node
// The `ambassador` executable. V8's heap settings come first, before the program is loaded
// (see lean-heap.ts); the command line itself is cli/main.ts.
import './lean-heap.js';

await import('./main.js');
