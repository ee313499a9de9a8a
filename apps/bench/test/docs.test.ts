import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface FakeModule {
  name: string;
  kindOf(kind: number): boolean;
}

describe('API docs configuration (typedoc.json)', () => {
  it('links no source to a repository that does not exist, and names modules by the plugin', () => {
    const config = JSON.parse(readFileSync(path.join(root, 'typedoc.json'), 'utf8')) as {
      packageOptions: Record<string, unknown>;
      plugin: string[];
    };
    // without a template TypeDoc links sources to the clone's own git remote, or not at all
    expect(JSON.stringify(config)).not.toContain('sourceLinkTemplate');
    expect(config.plugin).toContain('./scripts/typedoc-entry-names.mjs');
    const scripts = (
      JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    // `pnpm docs` is pnpm's builtin (npm docs: opens a browser), so the script must have another name
    expect(scripts.docs).toBeUndefined();
    expect(scripts['docs:api']).toBe('typedoc');
  });

  it('the plugin names entry-point modules after their import specifiers', async () => {
    const { load } = (await import(path.join(root, 'scripts', 'typedoc-entry-names.mjs'))) as {
      load(app: unknown): void;
    };
    const { ReflectionKind } = await import('typedoc');
    let handler: ((context: unknown) => void) | undefined;
    load({ converter: { on: (_event: string, fn: (context: unknown) => void) => (handler = fn) } });
    const module = (name: string, kind = ReflectionKind.Module): FakeModule => ({
      name,
      kindOf: (k: number) => (k & kind) !== 0,
    });
    const children = [module(''), module('vitest'), module('helper', ReflectionKind.Function)];
    handler?.({ project: { name: '@attnkit/conformance', children } });
    expect(children.map((c) => c.name)).toEqual([
      '@attnkit/conformance',
      '@attnkit/conformance/vitest',
      'helper',
    ]);
  });
});
