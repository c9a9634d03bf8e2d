import type { APIGatewayProxyResult } from 'aws-lambda';
import type { ConsentFailureReason } from '../errors';

/** Headers of every page the consent callback answers: nothing loads, nothing frames it, nothing is kept. */
export const CONSENT_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
};

/** What the page says for each failure: what happened, then what to do. */
const FAILURE_TEXT: Record<ConsentFailureReason, [string, string]> = {
  state_missing: [
    'This page was opened without a sign-in response.',
    'Start the connection again from the application that sent you.',
  ],
  state_unknown: [
    'This sign-in link was already used, or is not known.',
    'Links work once. Start the connection again from the application that sent you.',
  ],
  state_expired: [
    'This sign-in link has expired (links are valid for 10 minutes).',
    'Start the connection again from the application that sent you.',
  ],
  state_other_service: [
    'This sign-in was started for another service.',
    'Start the connection again from the application that sent you.',
  ],
  authorization_denied: [
    'You declined the consent, so nothing was connected.',
    'If that was a mistake, start the connection again and accept.',
  ],
  authorization_error: [
    'Microsoft sign-in reported an error, so nothing was connected.',
    'Start the connection again; if it keeps failing, contact your administrator.',
  ],
  redemption_failed: [
    'The sign-in could not be completed with Microsoft, so nothing was connected.',
    'Start the connection again; if it keeps failing, contact your administrator.',
  ],
  id_token_invalid: [
    'The sign-in response could not be verified, so nothing was connected.',
    'Start the connection again; if it keeps failing, contact your administrator.',
  ],
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(status: number, title: string, paragraphs: string[]): APIGatewayProxyResult {
  const body = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join('')}</body></html>`;
  return { statusCode: status, headers: { ...CONSENT_PAGE_HEADERS }, body };
}

/** 200: the user is connected. */
export function consentSuccessPage(username: string, service: string): APIGatewayProxyResult {
  return page(200, 'Connected', [`Connected as ${username} to ${service}; you can close this window.`]);
}

/** 400: what went wrong and what to do; never a code, a token or anything the browser brought. */
export function consentFailurePage(reason: ConsentFailureReason): APIGatewayProxyResult {
  const [what, todo] = FAILURE_TEXT[reason];
  return page(400, 'Not connected', [what, todo]);
}

/** 500: an internal failure, named only by the request id. */
export function internalErrorPage(requestId: string): APIGatewayProxyResult {
  return page(500, 'Not connected', [
    'Something went wrong on our side, so nothing was connected.',
    `Try again later; if it keeps failing, quote request id ${requestId} to your administrator.`,
  ]);
}
