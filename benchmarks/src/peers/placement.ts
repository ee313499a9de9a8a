import type { PlacementCheck } from '../subject.js';

/**
 * Where onnxruntime placed a session's nodes, read from its verbose log ("Node placements"):
 * execution provider -> node count. `null` when the log could not be obtained (then the row is not
 * marked either way and says so).
 */
export type NodePlacement = Record<string, number> | null;

/** Creates a session of `model` with verbose logging and returns where its nodes went. */
export type PlacementProbe = (model: Uint8Array) => Promise<NodePlacement>;

/**
 * Parses onnxruntime's verbose session log. ORT 1.17+ writes, per provider, either
 * `All nodes placed on [CPUExecutionProvider]. Number of nodes: 1` or
 * `Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3` under a "Node placements" header.
 */
export function parseNodePlacements(log: string): NodePlacement {
  const placement: Record<string, number> = {};
  const pattern = /(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/g;
  for (let m = pattern.exec(log); m !== null; m = pattern.exec(log))
    placement[m[1]] = (placement[m[1]] ?? 0) + Number(m[2]);
  return Object.keys(placement).length === 0 ? null : placement;
}

/** The providers other than `expected` that got nodes, e.g. `CPUExecutionProvider` for a WebGPU label. */
export function fallbackProviders(placement: NodePlacement, expected: string): string[] {
  if (placement === null) return [];
  return Object.keys(placement).filter((ep) => ep !== expected && (placement[ep] ?? 0) > 0);
}

/** The row's placement check from a probe's result. */
export function placementCheck(nodes: NodePlacement, expected: string): PlacementCheck {
  const fallback = fallbackProviders(nodes, expected);
  return { expected, nodes, fallback: fallback.length > 0 ? fallback.join(', ') : null };
}

/**
 * Probes placement once per key: it depends on the ops, their types and head layout, not on the
 * sequence length, and a probe costs a session (in Node a whole process). Without a probe the
 * check says "unknown" (`nodes: null`) rather than pretending.
 */
export function placementCache(expected: string, probe: PlacementProbe | undefined) {
  const seen = new Map<string, NodePlacement>();
  return {
    async check(key: string, model: Uint8Array): Promise<PlacementCheck> {
      let nodes = seen.get(key);
      if (nodes === undefined) {
        nodes = probe === undefined ? null : await probe(model);
        seen.set(key, nodes);
      }
      return placementCheck(nodes, expected);
    },
    clear() {
      seen.clear();
    },
  };
}
