// Reads a callgrind dump (the format written by valgrind --tool=callgrind) into self cost per
// function, and sorts that cost into what a Node process does: its JIT compilers (warm-up work
// that a long-running proxy pays once), garbage collection, and everything else (the work a
// connection itself asks for: JavaScript, V8 runtime and builtins, Node, libuv, libc).
import { readFileSync } from 'node:fs';

/** Self cost (first event, Ir) per function name. */
export function selfCost(file) {
  const names = new Map(); // "fn" compressed ids → names
  const self = new Map();
  let fn = '?';
  let afterCalls = false;
  const lookup = (spec) => {
    const m = spec.match(/^\((\d+)\)(?:\s+(.*))?$/);
    if (!m) return spec;
    if (m[2] !== undefined) names.set(m[1], m[2]);
    return names.get(m[1]) ?? spec;
  };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('fn=')) {
      fn = lookup(line.slice(3));
      continue;
    }
    if (line.startsWith('cfn=')) {
      lookup(line.slice(4));
      continue;
    }
    if (line.startsWith('calls=')) {
      afterCalls = true;
      continue;
    }
    const c = line.charCodeAt(0);
    // cost line: position (number, +n, -n, *) then the Ir count
    if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42) {
      if (afterCalls) {
        afterCalls = false; // inclusive cost of the call: the callee's, not ours
        continue;
      }
      const parts = line.split(' ');
      const ir = Number(parts[1] ?? 0);
      if (ir) self.set(fn, (self.get(fn) ?? 0) + ir);
    }
  }
  return self;
}

const COMPILE = /v8::internal::(compiler|maglev|baseline|turboshaft|wasm)::|v8::internal::(Parser|PreParser|Scanner|ParserBase|AstValueFactory|BytecodeGenerator|interpreter::BytecodeGenerator|interpreter::BytecodeArrayBuilder|Compiler::|OptimizingCompileDispatcher|Zone::|ZoneList|AccountingAllocator)|Turbofan|Turboshaft|Maglev|TurboAssembler|MacroAssembler|Assembler::|RegExpCompiler|RegExpParser|interpreter::/;
const GC = /v8::internal::(Heap::|Scavenger|ScavengerCollector|MarkCompact|MinorMarkCompact|MinorMarkSweep|MarkingVisitor|ConcurrentMarking|MarkingWorklist|Sweeper|MemoryAllocator|IncrementalMarking|MainMarkingVisitor|YoungGenerationMarking|EvacuateVisitor|Evacuator|PagedSpace|SemiSpace|NewSpace|LargeObjectSpace|GCTracer|RememberedSet|SlotSet|TypedSlotSet|ArrayBufferSweeper|MarkingBarrier|WriteBarrier|BodyDescriptor|HeapVisitor|LocalHeap|CppHeap|Scavenge|ObjectStatsCollector)|cppgc::|MarkingVisitorBase|ScavengeVisitor|IterateAndScavenge/;

/** { total, compile, gc, rest } of a dump, plus the top functions by self cost. */
export function classify(file, top = 25) {
  const self = selfCost(file);
  const out = { total: 0, compile: 0, gc: 0, rest: 0, top: [] };
  for (const [name, ir] of self) {
    out.total += ir;
    if (COMPILE.test(name)) out.compile += ir;
    else if (GC.test(name)) out.gc += ir;
    else out.rest += ir;
  }
  out.top = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  return out;
}

// CLI: node bench/lib/callgrind.mjs DUMP [N]
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = classify(process.argv[2], Number(process.argv[3] ?? 40));
  const pct = (x) => `${((100 * x) / r.total).toFixed(1)} %`;
  console.log(`total ${r.total}  compile ${pct(r.compile)}  gc ${pct(r.gc)}  rest ${pct(r.rest)}`);
  for (const [name, ir] of r.top) console.log(`${pct(ir).padStart(7)}  ${name.slice(0, 150)}`);
}
