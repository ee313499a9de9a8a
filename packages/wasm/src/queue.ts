/**
 * Calls run one after another on shared state (a kernel's arena, a cache's pages): counts the calls
 * not yet settled, and gives the settling of the last one for the next deferred call to wait on.
 */
export class CallQueue {
  private pending = 0;
  private last: Promise<unknown> = Promise.resolve();

  /** No tracked call is still running or waiting: a new one may start at once. */
  get idle(): boolean {
    return this.pending === 0;
  }

  /** Settles when the last tracked call has (it never rejects). */
  get tail(): Promise<unknown> {
    return this.last;
  }

  /** Counts `call` as pending until it settles; it becomes the tail. */
  track<T>(call: Promise<T>): Promise<T> {
    this.pending++;
    const settled = () => {
      this.pending--;
    };
    call.then(settled, settled);
    this.last = call.catch(() => undefined);
    return call;
  }
}
