#!/usr/bin/env node
// wasmos-js-build: turns a JavaScript framework (an ES module that exports `scheduler` and
// `executor`, usually through `framework()` of this package) into a wasmos component.
//
//   wasmos-js-build ENTRY.js -o OUT.wasm [--wit DIR] [--world framework]
//
// Two steps. Rolldown bundles ENTRY with what it imports (this package as `wasmos`, relative
// modules, npm packages) into one ES module, leaving the component's imports (`wasmos:*`,
// `wasi:*`) to the component model. componentize-js then splices bindings for the
// `wasmos:framework` world into the StarlingMonkey engine, runs the module's top level once
// (Wizer) and writes the snapshot as a component. WASI HTTP (and its fetch-event export) is left
// out: wasmos hosts give a framework no network, and a component importing `wasi:http` would
// not instantiate. The WIT is the project's `wit/` (next to this package) unless --wit says
// otherwise.

import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';

const here = dirname(fileURLToPath(import.meta.url));
const sdkEntry = resolve(here, '../src/index.js');

/** Largest entry module read, in bytes: far more than any hand-written framework. */
const MAX_ENTRY_BYTES = 16 << 20;

function usage(msg) {
  console.error(`wasmos-js-build: ${msg}\nusage: wasmos-js-build ENTRY.js -o OUT.wasm [--wit DIR] [--world NAME]`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { wit: resolve(here, '../../wit'), world: 'framework' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '-o' || a === '--out') opts.out = value();
    else if (a === '--wit') opts.wit = resolve(value());
    else if (a === '--world') opts.world = value();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (opts.entry === undefined) opts.entry = resolve(a);
    else usage(`one entry module only (got ${opts.entry} and ${a})`);
  }
  if (opts.entry === undefined) usage('no entry module');
  if (opts.out === undefined) usage('no output file (-o OUT.wasm)');
  return opts;
}

/** Resolves `wasmos` to this package and keeps the component's own imports external. */
const wasmosImports = {
  name: 'wasmos-imports',
  resolveId(id) {
    if (id === 'wasmos') return sdkEntry;
    if (/^(wasmos|wasi):/.test(id)) return { id, external: true };
    return null;
  },
};

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const info = await stat(opts.entry).catch(() => usage(`cannot read ${opts.entry}`));
  if (info.size > MAX_ENTRY_BYTES) usage(`${opts.entry} is ${info.size} bytes, more than ${MAX_ENTRY_BYTES}`);
  await stat(opts.wit).catch(() => usage(`no WIT at ${opts.wit}: pass --wit DIR (the project's wit/)`));

  const work = await mkdtemp(join(tmpdir(), 'wasmos-js-build-'));
  try {
    const bundle = await rolldown({ input: opts.entry, plugins: [wasmosImports], logLevel: 'warn' });
    // Named after the entry, so stack traces say `squares.js:LINE`.
    const bundled = join(work, basename(opts.entry).replace(/\.[cm]?[jt]s$/, '') + '.js');
    await bundle.write({ file: bundled, format: 'esm', sourcemap: false });
    await bundle.close();

    const { component } = await componentize({
      sourcePath: bundled,
      witPath: opts.wit,
      worldName: opts.world,
      disableFeatures: ['http', 'fetch-event'],
    });
    await writeFile(opts.out, component);
    console.error(`wasmos-js-build: wrote ${opts.out} (${component.length} bytes)`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`wasmos-js-build: ${e?.stack ?? e}`);
  process.exit(1);
});
