// What the stacks view says about the idle shutdown: the account's limit, and a warning near it.

const WARNING_SECONDS = 3600; // as the server's mail (shared/domain/idle.py): an hour, or half a shorter limit

function hours(minutes) {
  if (minutes % 60 === 0) return `${minutes / 60} h`;
  return minutes < 60 ? `${minutes} min` : `${(minutes / 60).toFixed(1)} h`;
}

/**
 * The notice for `account` (its `inactiveTimeout` in minutes, 0 for none, and `lastActive` in
 * seconds) at `now` (seconds): `{ text, warning }`, or null when the account has no idle limit.
 */
export function idleNotice(account, now) {
  const minutes = account?.inactiveTimeout ?? 0;
  if (!(minutes > 0)) return null;
  const text = `Running stacks stop after ${hours(minutes)} without activity (a login or an action on this page counts).`;
  const last = account.lastActive || 0;
  if (!last) return { text, warning: "" };
  const limit = minutes * 60;
  const stopAt = last + limit;
  if (now < stopAt - Math.min(WARNING_SECONDS, Math.floor(limit / 2))) return { text, warning: "" };
  const left = Math.max(0, Math.ceil((stopAt - now) / 60));
  const warning =
    left > 0
      ? `Without activity, your running stacks stop in about ${left} min. Any action here keeps them running.`
      : "Your running stacks are being stopped for lack of activity.";
  return { text, warning };
}
