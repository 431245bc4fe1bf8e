// pm2 ecosystem file for the drainctl supervisor.
//
//   pm2 start pm2/drainctl-supervisor.config.cjs && pm2 save
//
// pm2 starts `drainctl supervise` on the cron schedule and never restarts it when it
// exits (autorestart: false): each pass is one short invocation. The drains it starts
// run detached in their own sessions, so pm2 killing a stuck pass at the next
// cron_restart does not kill them.
module.exports = {
  apps: [
    {
      name: "drainctl-supervisor",
      script: "drainctl",
      args: "supervise",
      interpreter: "none",
      cron_restart: "5,20,35,50 * * * *",
      autorestart: false,
      env: {
        DRAINCTL_CONFIG: "/etc/drainctl/drainctl.toml",
      },
    },
  ],
};
