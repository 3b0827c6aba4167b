import type { z } from 'zod';
import { destinationProblem } from '../core/destination.js';
import { resourceProblem } from '../core/resource.js';
import { parse } from './parse.js';
import { argumentsValueProblem, authorizeSchema, TOOL_NAME } from './requests.js';

export type AuthorizeBody = z.output<typeof authorizeSchema>;

/**
 * The body of `POST /v1/authorize`, parsed as `authorizeSchema` parses it, with a plain
 * check first for the shape nearly every request has (the zod parse of this body cost
 * about 25 us of CPU per decision under load). The check accepts only what the schema
 * accepts and answers the value the schema would; anything it is unsure of (a missing
 * or unknown field, a wrong type, a bound crossed, a reserved key, a number that is not
 * finite, deep nesting) goes to the schema, which answers the value or the typed error.
 * test/wire-authorize-body.test.ts holds the two to the same answers.
 */
export function parseAuthorizeBody(input: unknown): AuthorizeBody {
  return plainAuthorizeBody(input) ?? parse(authorizeSchema, input);
}

/** The value the schema answers for `input`, or undefined when the schema must decide. */
export function plainAuthorizeBody(input: unknown): AuthorizeBody | undefined {
  if (!isPlainObject(input)) return undefined;
  let tool: unknown, args: unknown, audience: unknown, resource: unknown, destination: unknown;
  let hasArgs = false, hasResource = false, hasDestination = false;
  for (const k of Object.keys(input)) {
    const v = input[k];
    if (k === 'tool') tool = v;
    else if (k === 'arguments') (args = v), (hasArgs = true);
    else if (k === 'audience') audience = v;
    else if (k === 'resource') (resource = v), (hasResource = true);
    else if (k === 'destination') (destination = v), (hasDestination = true);
    else return undefined;
  }
  if (typeof tool !== 'string' || tool.length < 1 || tool.length > 256 || !TOOL_NAME.test(tool)) return undefined;
  if (typeof audience !== 'string' || audience.length < 1 || audience.length > 1024) return undefined;
  if (!hasArgs || !isPlainObject(args) || argumentsValueProblem(args) !== null) return undefined;
  if (hasResource && (typeof resource !== 'string' || resourceProblem(resource) !== null)) return undefined;
  if (hasDestination && (typeof destination !== 'string' || destinationProblem(destination) !== null)) return undefined;
  const out: AuthorizeBody = { tool, arguments: args, audience };
  if (hasResource) out.resource = resource as string;
  if (hasDestination) out.destination = destination as string;
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  return Object.getPrototypeOf(v) === Object.prototype;
}

