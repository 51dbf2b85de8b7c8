// The live queue of pending approvals, shared by the nav badge and the Approvals page:
// one `pendingApprovals` subscription, plus a snapshot query at every (re)start.
import { createContext, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from "react";
import { useClient } from "urql";
import { graphql } from "../gql";
import type { ApprovalFieldsFragment } from "../gql/graphql";
import { useViewer } from "../viewer";
import { useLiveSubscription } from "./live";
import { useRefreshOn } from "./refresh";

export type Approval = ApprovalFieldsFragment;

graphql(`
  fragment ApprovalFields on Approval {
    id
    status
    reason
    requestedAt
    expiresAt
    decidedAt
    decidedBy
    comment
    url
    toolCall {
      id
      toolCallId
      agentId
      toolName
      actionHint
      inputPayload
      reason
      agentContext
      service
      environment
      decision
      decisionReason
      status
      matchedPolicies {
        policyId
        policyName
        action
        reason
        version
        dryRun
      }
    }
    run {
      id
      runId
      agentId
      task
      model
      reason
      agentContext
      status
    }
  }
`);

const PendingDocument = graphql(`
  query PendingApprovals($first: Int) {
    approvals(status: PENDING, first: $first) {
      nodes {
        ...ApprovalFields
      }
    }
  }
`);

const PendingLiveDocument = graphql(`
  subscription PendingApprovalsLive {
    pendingApprovals {
      kind
      approval {
        ...ApprovalFields
      }
    }
  }
`);

export interface Settled {
  approval: Approval;
  /** When this browser learnt of it. */
  at: number;
}

interface ApprovalsValue {
  pending: Approval[];
  ready: boolean;
  problem: string | null;
  /** Approvals decided or expired since the page was opened (newest first). */
  settled: Settled[];
  /** Take a decided approval out of the queue at once (the event confirms it). */
  settle: (approval: Approval) => void;
}

const ApprovalsContext = createContext<ApprovalsValue | null>(null);

const SNAPSHOT_SIZE = 200;

function byExpiry(a: Approval, b: Approval): number {
  return Date.parse(a.expiresAt) - Date.parse(b.expiresAt);
}

export function ApprovalsProvider({ children }: { children: ReactNode }) {
  const client = useClient();
  const snapshotSize = useViewer().page(SNAPSHOT_SIZE);
  const [pending, setPending] = useState<Map<string, Approval>>(new Map());
  const [settled, setSettled] = useState<Settled[]>([]);
  const [ready, setReady] = useState(false);
  // Ids known to be decided or expired: a late snapshot never brings them back.
  const gone = useRef(new Set<string>());
  // Ids an event added since the last (re)start: a snapshot read earlier may lack them.
  const addedSinceStart = useRef(new Set<string>());

  const settle = useCallback((approval: Approval) => {
    if (approval.status === "PENDING") return;
    const first = !gone.current.has(approval.id);
    gone.current.add(approval.id);
    setPending((current) => {
      if (!current.has(approval.id)) return current;
      const next = new Map(current);
      next.delete(approval.id);
      return next;
    });
    if (first) setSettled((current) => [{ approval, at: Date.now() }, ...current].slice(0, 50));
  }, []);

  const snapshot = useCallback(async () => {
    const result = await client
      .query(PendingDocument, { first: snapshotSize }, { requestPolicy: "network-only" })
      .toPromise();
    if (!result.data) return;
    const fresh = new Map(
      result.data.approvals.nodes.filter((a) => !gone.current.has(a.id)).map((a) => [a.id, a]),
    );
    setPending((current) => {
      const next = new Map(fresh);
      for (const [id, approval] of current) {
        if (!next.has(id) && addedSinceStart.current.has(id) && !gone.current.has(id)) next.set(id, approval);
      }
      return next;
    });
    setReady(true);
  }, [client, snapshotSize]);

  const live = useLiveSubscription("pendingApprovals", {
    document: PendingLiveDocument,
    variables: () => ({}),
    onStart: () => {
      addedSinceStart.current = new Set();
      void snapshot();
    },
    onData: ({ pendingApprovals: event }) => {
      const approval = event.approval;
      if (event.kind === "REQUESTED" && approval.status === "PENDING") {
        if (gone.current.has(approval.id)) return;
        addedSinceStart.current.add(approval.id);
        setPending((current) => new Map(current).set(approval.id, approval));
      } else {
        settle(approval);
      }
    },
  });

  // A request's run may end while it waits (the agent gave up): read the queue again then,
  // so its card says so.
  const reread = useCallback(() => void snapshot(), [snapshot]);
  useRefreshOn({ kinds: ["RUN_COMPLETED", "RUN_FAILED"] }, reread, ready && pending.size > 0);

  const value = useMemo(
    () => ({
      pending: [...pending.values()].sort(byExpiry),
      ready,
      problem: live.problem,
      settled,
      settle,
    }),
    [pending, ready, live.problem, settled, settle],
  );
  return <ApprovalsContext.Provider value={value}>{children}</ApprovalsContext.Provider>;
}

export function useApprovals(): ApprovalsValue {
  const value = useContext(ApprovalsContext);
  if (!value) throw new Error("useApprovals outside ApprovalsProvider");
  return value;
}
