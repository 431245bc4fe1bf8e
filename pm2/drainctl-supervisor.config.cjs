// pm2 ecosystem file for the drainctl supervisor.
//
//   pm2 start pm2/drainctl-supervisor.config.cjs && pm2 save
//
// pm2 starts `drainctl supervise` on the cron schedule and never restarts it when it
// exits (autorestart: false): each pass is one short invocation. Stop the schedule with
// `pm2 delete drainctl-supervisor`: `pm2 stop` leaves the cron_restart running.
//
// The drains a pass starts are re-parented away from it before it goes on, and
// treekill: false makes pm2 signal only supervise itself, so neither a stop, a restart,
// a delete nor the next cron_restart takes a running drain down.
//
// kill_timeout: 30000 gives a pass that stop, restart or delete sends SIGINT (pm2's
// kill_signal) time to finish its step (a statement waits for a lock at most 10 s; ending
// a hung run whose drain is frozen takes up to twice kill_grace and 2 s, 22 s with the
// default kill_grace), stop its notifier and record the interruption; pm2's default of
// 1.6 s would SIGKILL it mid-step. With a kill_grace above 14s, raise it to match.
//
// time: true dates every line pm2 writes to ~/.pm2/logs/drainctl-supervisor-*.log;
// rotate those with pm2-logrotate. The drains' own logs under log_dir are not pm2's:
// retention prunes them, never rotate them.
//
// No secrets here: `pm2 save` writes this environment to a world-readable dump. Keep the
// database URL in the configuration file (mode 0600) — see docs/operations.md.
module.exports = {
  apps: [
    {
      name: "drainctl-supervisor",
      // Absolute: pm2 looks a relative script up in the folder `pm2 start` ran in first,
      // where a `drainctl` checkout or folder would be "run" instead (docs/operations.md).
      script: "/usr/local/bin/drainctl",
      args: "supervise",
      interpreter: "none",
      cron_restart: "5,20,35,50 * * * *",
      autorestart: false,
      treekill: false,
      kill_timeout: 30000,
      time: true,
      env: {
        DRAINCTL_CONFIG: "/etc/drainctl/drainctl.toml",
      },
    },
  ],
};
