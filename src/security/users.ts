// Local users and groups: names for uids (for log lines and dumps) and the --allow-user /
// --allow-group policy. Read from /etc/passwd and /etc/group once, at start-up; parsing is pure.

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export interface Group {
  name: string;
  gid: number;
  members: string[];
}

/** `name:x:uid:gid:…` lines; malformed lines are skipped. */
export function parsePasswd(text: string): Account[] {
  const out: Account[] = [];
  for (const line of text.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name && /^\d+$/.test(uid ?? "") && /^\d+$/.test(gid ?? "")) out.push({ name, uid: Number(uid), gid: Number(gid) });
  }
  return out;
}

/** `name:x:gid:member,member` lines; malformed lines are skipped. */
export function parseGroup(text: string): Group[] {
  const out: Group[] = [];
  for (const line of text.split("\n")) {
    const [name, , gid, members] = line.split(":");
    if (name && /^\d+$/.test(gid ?? "")) out.push({ name, gid: Number(gid), members: (members ?? "").split(",").filter(Boolean) });
  }
  return out;
}

export class UserError extends Error {}

/**
 * Who may use the proxy. Without --allow-user and --allow-group everyone on the host may, as in the
 * reference. With them, a uid is allowed when it is listed, or when its primary group or one of its
 * supplementary groups (as /etc/passwd and /etc/group say at start-up) is.
 */
export class UserPolicy {
  private readonly names = new Map<number, string>();
  private readonly allowedUids = new Set<number>();
  private readonly allowedGids = new Set<number>();
  readonly restricted: boolean;

  constructor(
    private readonly accounts: Account[],
    private readonly groups: Group[],
    allowUsers: string[] = [],
    allowGroups: string[] = [],
  ) {
    for (const a of accounts) if (!this.names.has(a.uid)) this.names.set(a.uid, a.name);
    for (const u of allowUsers) this.allowedUids.add(this.resolve(u, "user", accounts.map((a) => [a.name, a.uid])));
    for (const g of allowGroups) this.allowedGids.add(this.resolve(g, "group", groups.map((x) => [x.name, x.gid])));
    this.restricted = allowUsers.length + allowGroups.length > 0;
  }

  /** A name or a number; an unknown name is an error (a typo must not lock everyone out silently). */
  private resolve(value: string, kind: string, known: Array<[string, number]>): number {
    if (/^\d+$/.test(value)) return Number(value);
    const found = known.find(([name]) => name === value);
    if (!found) throw new UserError(`--allow-${kind} ${value}: no such ${kind} on this host`);
    return found[1];
  }

  /** `alice(1000)`, or `1000` when the uid has no name; `unknown` when the owner is not known. */
  label(uid: number | undefined): string {
    if (uid === undefined) return "unknown";
    const name = this.names.get(uid);
    return name ? `${name}(${uid})` : String(uid);
  }

  private readonly decided = new Map<number, boolean>();

  allows(uid: number | undefined): boolean {
    if (!this.restricted) return true;
    if (uid === undefined) return false; // fail closed: an owner the kernel did not name
    let allowed = this.decided.get(uid);
    if (allowed === undefined) {
      const account = this.accounts.find((a) => a.uid === uid);
      allowed =
        this.allowedUids.has(uid) ||
        (account !== undefined &&
          (this.allowedGids.has(account.gid) ||
            this.groups.some((g) => this.allowedGids.has(g.gid) && g.members.includes(account.name))));
      this.decided.set(uid, allowed);
    }
    return allowed;
  }
}
