#!/usr/bin/env node
// The `ambassador` executable. V8's heap comes first, before the program is loaded (heap.ts may
// replace this process with one whose heap is made as chosen); the command line is cli/main.ts.
import './heap.js';

await import('./main.js');
