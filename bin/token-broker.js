#!/usr/bin/env node
// The `token-broker` command (package.json "bin"). The CLI is TypeScript; tsx's scoped loader runs it without a
// build step, so the command is always the code in the repository (see README, "CLI").
import { tsImport } from 'tsx/esm/api';

const { main } = await tsImport('../cli/main.ts', import.meta.url);
await main();
