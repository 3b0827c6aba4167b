/**
 * `writ/sdk`: the SDK as this package re-exports it, for code that imports it from the
 * server package. The SDK itself is the workspace package `@writ/sdk` (packages/sdk),
 * which depends on jose and canonicalize only; import that in a tool server or agent.
 */
export * from '@writ/sdk';
