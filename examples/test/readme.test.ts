// Every TypeScript block in the READMEs is a file under examples/readme/, included verbatim: a block is
// preceded by `<!-- example: examples/readme/NAME.ts -->` and must equal that file. This test checks
// the blocks against the files (so a README edit cannot drift from what runs) and runs every file.
// Blocks in `sh` or `text` fences are commands and output, not programs: they are not run.
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const examplesDir = join(root, 'examples', 'readme');
const NOT_RUN = new Set(['sh', 'text']);

async function readmes(): Promise<string[]> {
  const packages = await readdir(join(root, 'packages'));
  return ['README.md', ...packages.sort().map((p) => join('packages', p, 'README.md'))];
}

interface Block {
  readme: string;
  line: number;
  lang: string;
  example: string | null;
  body: string;
}

function blocks(readme: string, text: string): Block[] {
  const lines = text.split('\n');
  const found: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (open === null) continue;
    const end = lines.indexOf('```', i + 1);
    if (end === -1) throw new Error(`${readme}:${i + 1}: unclosed code fence`);
    const marker = /^<!-- example: (\S+) -->$/.exec(lines[i - 1] ?? '');
    found.push({
      readme,
      line: i + 1,
      lang: open[1],
      example: marker === null ? null : marker[1],
      body: `${lines.slice(i + 1, end).join('\n')}\n`,
    });
    i = end;
  }
  return found;
}

const all: Block[] = [];
for (const readme of await readmes()) {
  const text = await readFile(join(root, readme), 'utf8').catch(() => null);
  if (text !== null) all.push(...blocks(readme, text));
}
const examples = (await readdir(examplesDir)).filter((f) => f.endsWith('.ts')).sort();

describe('README code blocks', () => {
  it('are all either a command/output block (sh, text) or an included example', () => {
    const loose = all.filter((b) => !NOT_RUN.has(b.lang) && b.example === null);
    expect(loose.map((b) => `${b.readme}:${b.line} (${b.lang || 'no language'})`)).toEqual([]);
  });

  it('equal the example file they include', async () => {
    for (const block of all.filter((b) => b.example !== null)) {
      const file = await readFile(join(root, block.example as string), 'utf8');
      expect(block.body, `${block.readme}:${block.line} vs ${block.example}`).toBe(file);
    }
  });

  it('include every example file', () => {
    const included = new Set(all.map((b) => b.example));
    const unused = examples.filter((f) => !included.has(relative(root, join(examplesDir, f))));
    expect(unused).toEqual([]);
  });
});

describe('README examples run', () => {
  for (const file of examples) {
    if (file === 'webgl.ts') {
      // gpu.js needs a GL context: in Node (no headless-gl here) init() must reject with the
      // documented 'unavailable' error, never fall back. The browser runs of @attnkit/webgl cover
      // the rest of this example's calls.
      it(`${file} rejects init() with 'unavailable' in Node`, async () => {
        await expect(import(join(examplesDir, file))).rejects.toMatchObject({ code: 'unavailable' });
      });
      continue;
    }
    if (file === 'conformance-vitest.ts') {
      // A vitest file: its describeConformance call registers the cases while this describe collects.
      describe(file, async () => {
        await import(join(examplesDir, file));
      });
      continue;
    }
    it(file, async () => {
      await import(join(examplesDir, file));
    });
  }
});
