/**
 * Labels on every Docker container and network that a test creates. The global setup removes
 * objects with `dev.luma.test=1` that an earlier, interrupted run left behind: those whose
 * `dev.luma.test.pid` names a process that no longer exists, or, without that label, those
 * older than `LEFTOVER_AGE_MS`.
 */
export const TEST_LABEL = 'dev.luma.test';
export const TEST_PID_LABEL = 'dev.luma.test.pid';

/** Age after which a test object without a pid label counts as left over: 30 minutes. */
export const LEFTOVER_AGE_MS = 30 * 60 * 1000;

/** Returns the labels for a container or network that the calling test process creates. */
export function testLabels(): Record<string, string> {
  return { [TEST_LABEL]: '1', [TEST_PID_LABEL]: String(process.pid) };
}
