/** Usage text of the approval, break-glass and presence commands (kept apart so `writ --help` loads no command module). */

export const APPROVALS_USAGE: Record<string, string> = {
  list: 'writ approvals list [--status pending|approved|denied|expired|cancelled|used] [--task ID] [--limit N]',
  show:
    'writ approvals show ID [--wait SECONDS] [--task-token T]\n' +
    '    an operator sees the whole action; with --task-token the agent reads it, and its first read\n' +
    '    of an approved approval returns the action token (the approval is then used); --wait <= 30',
  approve: 'writ approvals approve ID [--comment TEXT]',
  deny: 'writ approvals deny ID [--comment TEXT]',
};

export const BREAK_GLASS_USAGE: Record<string, string> = {
  start:
    'writ break-glass start (--agent ID | --task ID) --justification TEXT --tool PATTERN [--tool PATTERN ...] --duration SECONDS\n' +
    '    justification: 20 to 4096 characters; duration: at most the configured cap (default 3600)',
  confirm: 'writ break-glass confirm ID      (a second admin, when confirmation is required)',
  end: 'writ break-glass end ID [--reason TEXT]',
  review: 'writ break-glass review ID --notes TEXT',
  list: 'writ break-glass list [--state active|pending|ended|unreviewed] [--agent ID] [--limit N]',
  show: 'writ break-glass show ID',
};

export const PRESENCE_USAGE =
  'writ task presence ID [--ttl SECONDS] [--show]\n' +
  '    the task owner renews its presence lease (default and at most 300 s; 0: stepping away now); --show only reads it';
