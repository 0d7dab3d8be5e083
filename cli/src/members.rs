//! `wasmos operator members list|add|remove`: the masters of a replicated group, through the
//! leader's `OperatorService` (found among `--master ADDR[,ADDR...]` by following the
//! not-leader hints).

use std::process::ExitCode;

use wasmos_api::proto as pb;

use crate::client::{self, DEFAULT_MASTER, Failure, find_leader, master_list};

#[derive(clap::Subcommand)]
pub enum MembersCommand {
    /// List the masters: id, address, voter or learner, and which one leads.
    #[command(after_help = "Example:\n  wasmos operator members list --master 10.0.0.1:5050")]
    List(ListArgs),
    /// Add a running master (started with --data-dir and --id) to the group.
    #[command(
        after_help = "Example:\n  wasmos master --id 2 --data-dir m2 --listen 10.0.0.2:5050   # on the new machine\n  wasmos operator members add 2 10.0.0.2:5050 --master 10.0.0.1:5050"
    )]
    Add(AddArgs),
    /// Remove a master from the group (a removed leader steps down).
    #[command(after_help = "Example:\n  wasmos operator members remove 3 --master 10.0.0.1:5050")]
    Remove(RemoveArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Any master(s) of the group.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The new master's id (its --id).
    id: u64,
    /// The address it serves on (its --listen), HOST:PORT.
    address: String,
    /// Any master(s) of the group.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The id of the master to remove.
    id: u64,
    /// Any master(s) of the group.
    #[arg(long, value_name = "ADDR[,ADDR...]", env = "WASMOS_MASTER", default_value = DEFAULT_MASTER)]
    master: String,
}

/// Runs a `members` subcommand; prints the membership after it.
pub async fn run(command: MembersCommand) -> ExitCode {
    let (master, call) = match command {
        MembersCommand::List(a) => (a.master, Call::List),
        MembersCommand::Add(a) => (a.master, Call::Add(a.id, a.address)),
        MembersCommand::Remove(a) => (a.master, Call::Remove(a.id)),
    };
    match members(&master, call).await {
        Ok(list) => {
            for m in &list.members {
                println!(
                    "{}\t{}\t{}{}",
                    m.id,
                    m.address,
                    if m.voter { "voter" } else { "learner" },
                    if m.id == list.leader_id {
                        "\tleader"
                    } else {
                        ""
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => f.report("wasmos operator members"),
    }
}

enum Call {
    List,
    Add(u64, String),
    Remove(u64),
}

async fn members(master: &str, call: Call) -> Result<pb::ListMembersResponse, Failure> {
    let leader = find_leader(&master_list(master)).await?;
    let mut op = client::connect(&leader).await?;
    let answer = match call {
        Call::List => op.list_members(pb::ListMembersRequest {}).await,
        Call::Add(id, address) => op.add_member(pb::AddMemberRequest { id, address }).await,
        Call::Remove(id) => op.remove_member(pb::RemoveMemberRequest { id }).await,
    };
    answer
        .map(|r| r.into_inner())
        .map_err(|s| Failure::Refused(format!("the master at {leader} refused: {}", s.message())))
}
