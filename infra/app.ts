/**
 * CDK app entry (`cdk.json`: `npx tsx infra/app.ts`). Deploy with `npx cdk deploy -c stage=prod ...`; the
 * context keys are listed in create-app.ts. The CLI synthesizes the app when this module finishes.
 */
import { createTokenBrokerApp } from './create-app';

createTokenBrokerApp();
