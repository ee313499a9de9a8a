import { AttnkitError, invalidArgument } from './errors.js';

/**
 * One rule of a factory's option schema. The kinds cover what attnkit's factories take; `custom` is
 * the escape hatch for objects (a `GPUDevice`, a URL) that only a predicate can recognise.
 */
export type FactoryOptionRule =
  | {
      kind: 'integer';
      min?: number;
      max?: number;
      /** Literal values accepted besides the integers (e.g. `'auto'`). */
      also?: readonly (string | number | boolean)[];
    }
  | { kind: 'number'; min?: number; max?: number }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly (string | number | boolean)[] }
  | { kind: 'function' }
  | { kind: 'custom'; description: string; test: (value: unknown) => boolean };

/**
 * A rule for every key of an options interface (the mapped type makes a forgotten key a compile
 * error), in the order the keys are listed in error messages.
 */
export type FactoryOptionSchema<O> = { readonly [K in keyof Required<O>]: FactoryOptionRule };

function describeLiteral(value: string | number | boolean): string {
  return typeof value === 'string' ? `'${value}'` : String(value);
}

/** The words of a rule, for `expected`. */
export function describeRule(rule: FactoryOptionRule): string {
  switch (rule.kind) {
    case 'integer': {
      const min = rule.min ?? Number.NEGATIVE_INFINITY;
      const max = rule.max ?? Number.POSITIVE_INFINITY;
      let words = 'an integer';
      if (Number.isFinite(min) && Number.isFinite(max)) words += ` in [${min}, ${max}]`;
      else if (Number.isFinite(min)) words += ` >= ${min}`;
      else if (Number.isFinite(max)) words += ` <= ${max}`;
      if (rule.also !== undefined && rule.also.length > 0)
        words += ` or ${rule.also.map(describeLiteral).join(' or ')}`;
      return words;
    }
    case 'number': {
      let words = 'a finite number';
      if (rule.min !== undefined && rule.max !== undefined) words += ` in [${rule.min}, ${rule.max}]`;
      else if (rule.min !== undefined) words += ` >= ${rule.min}`;
      else if (rule.max !== undefined) words += ` <= ${rule.max}`;
      return words;
    }
    case 'boolean':
      return 'a boolean';
    case 'enum':
      return `one of ${rule.values.map(describeLiteral).join(', ')}`;
    case 'function':
      return 'a function';
    case 'custom':
      return rule.description;
  }
}

function satisfies(rule: FactoryOptionRule, value: unknown): boolean {
  switch (rule.kind) {
    case 'integer':
      if (rule.also?.includes(value as string | number | boolean)) return true;
      return (
        typeof value === 'number' &&
        Number.isInteger(value) &&
        value >= (rule.min ?? Number.NEGATIVE_INFINITY) &&
        value <= (rule.max ?? Number.POSITIVE_INFINITY)
      );
    case 'number':
      return (
        typeof value === 'number' &&
        Number.isFinite(value) &&
        value >= (rule.min ?? Number.NEGATIVE_INFINITY) &&
        value <= (rule.max ?? Number.POSITIVE_INFINITY)
      );
    case 'boolean':
      return typeof value === 'boolean';
    case 'enum':
      return rule.values.includes(value as string | number | boolean);
    case 'function':
      return typeof value === 'function';
    case 'custom':
      return rule.test(value);
  }
}

/**
 * Checks a backend factory's options against its schema, the way {@link validateAttention} checks a
 * call's: `undefined` means "all defaults"; `null`, an array or another non-object is rejected; an
 * unknown key (a typo such as `thread` for `threads`) is rejected listing the known keys; each known
 * key is read exactly once (a getter cannot change a value after it was checked) and checked against
 * its rule. Throws `invalid-argument` naming `options.<key>` with the expected and actual values.
 * Returns a plain copy holding the keys that were set; `undefined` values count as unset.
 */
export function validateFactoryOptions<O extends object>(
  factory: string,
  options: unknown,
  schema: FactoryOptionSchema<O>,
): Partial<O> {
  if (options === undefined) return {};
  if (
    typeof options !== 'object' ||
    options === null ||
    Array.isArray(options) ||
    ArrayBuffer.isView(options)
  ) {
    invalidArgument(factory, 'options', 'an object (or undefined for the defaults)', options);
  }
  const rules = schema as Readonly<Record<string, FactoryOptionRule>>;
  const known = Object.keys(rules);
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(rules, key)) {
      const list = known.join(', ');
      throw new AttnkitError(
        'invalid-argument',
        `${factory}: options has unknown key "${key}" (known: ${list})`,
        { argument: `options.${key}`, expected: `one of ${list}`, actual: JSON.stringify(key) },
      );
    }
  }
  const source = options as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of known) {
    const value = source[key];
    if (value === undefined) continue;
    const rule = rules[key] as FactoryOptionRule;
    if (!satisfies(rule, value)) invalidArgument(factory, `options.${key}`, describeRule(rule), value);
    copy[key] = value;
  }
  return copy as Partial<O>;
}
