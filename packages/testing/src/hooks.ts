/**
 * Helpers over the EventLoop testing hooks (upstream `testing_hook_*`, runtime `TestingHooks`):
 * record which hooks fired, or wait for the next firing of one, so tests order events by hooks
 * instead of sleeping. A helper chains to whatever hook was already installed.
 *
 * Threading: loop thread (hooks run synchronously on the loop thread that owns them).
 */

import type { EventLoop, TestingHooks } from "@multiprocess-ts/runtime";

export type HookName = keyof TestingHooks;

/**
 * Appends the hook's name to the returned array each time one of `names` fires on `loop`.
 * The returned array is live; `stop()` restores the previous hooks.
 */
export function recordHooks(loop: EventLoop, names: readonly HookName[]): { readonly fired: HookName[]; stop(): void } {
  const fired: HookName[] = [];
  const restore = names.map((name) => {
    const before = loop.hooks[name];
    loop.hooks[name] = () => {
      fired.push(name);
      before?.();
    };
    return () => void (loop.hooks[name] = before);
  });
  return { fired, stop: () => restore.forEach((r) => r()) };
}

/**
 * Resolves the next time `name` fires on `loop`; `onFire` runs synchronously inside the hook (for
 * example to fence a transport at exactly that point). The previous hook keeps running and is put
 * back after the first firing.
 */
export function nextHook(loop: EventLoop, name: HookName, onFire?: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const before = loop.hooks[name];
    loop.hooks[name] = () => {
      loop.hooks[name] = before;
      before?.();
      onFire?.();
      resolve();
    };
  });
}
