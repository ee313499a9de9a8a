// TypeDoc plugin: names the modules of a package with several entry points after their import
// specifiers. In `packages` mode TypeDoc names them after the `exports` keys, so the "." entry of
// @attnkit/conformance came out with an empty name ("@attnkit/conformance." in the docs, a page
// titled " | attnkit") beside "vitest". Here they become "@attnkit/conformance" and
// "@attnkit/conformance/vitest", what a user types in an import.
import { Converter, ReflectionKind } from 'typedoc';

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    const project = context.project;
    for (const child of project.children ?? []) {
      if (!child.kindOf(ReflectionKind.Module)) continue;
      const entry = child.name.replace(/^\.\/?/, '');
      child.name = entry === '' || entry === 'index' ? project.name : `${project.name}/${entry}`;
    }
  });
}
