/** Adam (Kingma & Ba), with bias correction, over a set of named float32 parameters. */
export interface AdamConfig {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

export class Adam {
  private readonly m = new Map<string, Float64Array>();
  private readonly v = new Map<string, Float64Array>();
  private step = 0;

  constructor(private readonly config: AdamConfig) {}

  /** Updates every parameter in place from its gradient (same keys, same lengths). */
  update(parameters: Record<string, Float32Array>, gradients: Record<string, Float32Array>): void {
    const { learningRate, beta1, beta2, epsilon } = this.config;
    this.step++;
    const correction1 = 1 - beta1 ** this.step;
    const correction2 = 1 - beta2 ** this.step;
    for (const [name, parameter] of Object.entries(parameters)) {
      const gradient = gradients[name];
      if (gradient === undefined || gradient.length !== parameter.length) {
        throw new Error(`adam: no gradient of length ${parameter.length} for ${name}`);
      }
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (m === undefined || v === undefined) {
        m = new Float64Array(parameter.length);
        v = new Float64Array(parameter.length);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      for (let i = 0; i < parameter.length; i++) {
        const g = gradient[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        parameter[i] -= (learningRate * (m[i] / correction1)) / (Math.sqrt(v[i] / correction2) + epsilon);
      }
    }
  }
}
