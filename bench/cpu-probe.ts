/**
 * Preloaded into every benchmark broker (`node --import tsx --import ./bench/cpu-probe.ts local/server.ts`): answers
 * the benchmark's IPC question "cpu-usage" with the broker's own `process.cpuUsage()`, so that the CPU a hit costs
 * is measured inside the broker, apart from DynamoDB Local, the Entra emulator and the load generator. Nothing of
 * the broker itself changes.
 */
process.on('message', (message) => {
  if (message === 'cpu-usage') process.send?.({ cpuUsage: process.cpuUsage() });
});
