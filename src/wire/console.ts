import { z } from 'zod';

/**
 * The console's own endpoints (`/console/api/*`, src/server/routes-console.ts). Everything
 * else the console does goes through the `/v1` API and its schemas.
 */

/** `POST /console/api/session`: sign in with an operator token (never stored in the browser). */
export const consoleSignInSchema = z.strictObject({
  token: z.string().min(1, 'an operator token is required').max(4096, 'the token is longer than any operator token'),
});

/** `GET /console/api/events`: no parameters (an unknown one is refused, like everywhere). */
export const consoleEventsQuerySchema = z.strictObject({});
