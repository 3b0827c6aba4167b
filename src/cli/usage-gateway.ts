/** Usage text of `writ gateway` (kept apart so `writ --help` loads no command module). */

export const GATEWAY_USAGE: Record<string, string> = {
  mcp:
    'writ gateway mcp --config FILE [--stdio] [--host H] [--port P] [--dpop-key FILE]\n' +
    '    the MCP gateway: streamable HTTP on listen.host:listen.port + listen.path (agents send\n' +
    '    `Authorization: Bearer <task token>`, or `DPoP` with a proof for a bound one), or with --stdio\n' +
    '    one agent on stdin/stdout whose task token is in WRIT_TASK_TOKEN (writ.task_token_env) or\n' +
    '    writ.task_token_file; --dpop-key (writ.dpop_key_file): the agent\'s DPoP key, for tokens bound to it\n' +
    '  writ gateway mcp --config FILE --stdio --agent ID [--agent-key FILE] (--task ID | --follow-agent-tasks)\n' +
    '    the gateway holds the agent\'s key (--agent-key, or the JWK in WRIT_AGENT_KEY) and obtains and\n' +
    '    renews its own task token: for one task, or for each task an operator assigns to the agent',
  http: 'writ gateway http --config FILE [--host H] [--port P] [--dpop-key FILE]\n    the HTTP tool proxy (routes -> upstreams, each request authorized)',
  tools:
    'writ gateway tools approve --config FILE [--upstream NAME ...] [--tool UPSTREAM.TOOL ...]\n' +
    '    connects to the upstreams, lists their tools and pins them (writes pins_file)\n' +
    '  writ gateway tools list --config FILE\n' +
    '    each upstream tool with its pin status: pinned, changed, unpinned',
  labels:
    'writ gateway labels --config FILE [--url URL] [--token ADMIN_TOKEN]\n' +
    '    stores the labels the configuration gives tools (`upstreams[].tools.<tool>.labels`, or\n' +
    '    `routes[].labels` of a proxy configuration) in Writ, where policy sees them as `resource.labels`',
};
