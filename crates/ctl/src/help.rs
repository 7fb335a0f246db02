//! Help text in etcdctl's layout (NAME, USAGE, DESCRIPTION, COMMANDS, OPTIONS, GLOBAL OPTIONS),
//! rendered from the clap command tree and aligned the way Go's `text/tabwriter` aligns it.

use clap::{Arg, ArgAction, Command};

/// Usage lines that say more than `etcdctl <command>` (etcd's `Use` strings).
const USAGES: &[&str] = &[
    "etcdctl check datascale [options]",
    "etcdctl check perf [options]",
    "etcdctl compaction [options] <revision>",
    "etcdctl completion bash",
    "etcdctl del [options] <key> [range_end]",
    "etcdctl elect <election-name> [proposal]",
    "etcdctl get [options] <key> [range_end]",
    "etcdctl help [command]",
    "etcdctl lease grant <ttl>",
    "etcdctl lease keep-alive [options] <leaseID>",
    "etcdctl lease revoke <leaseID>",
    "etcdctl lease timetolive <leaseID> [options]",
    "etcdctl lock <lockname> [exec-command arg1 arg2 ...]",
    "etcdctl make-mirror [options] <destination>",
    "etcdctl member add <memberName> [options]",
    "etcdctl member promote <memberID>",
    "etcdctl member remove <memberID>",
    "etcdctl member update <memberID> [options]",
    "etcdctl move-leader <transferee-member-id>",
    "etcdctl put [options] <key> <value> (<value> can also be given from stdin)",
    "etcdctl role add <role name>",
    "etcdctl role delete <role name>",
    "etcdctl role get <role name>",
    "etcdctl role grant-permission [options] <role name> <permission type> <key> [endkey]",
    "etcdctl role revoke-permission <role name> <key> [endkey]",
    "etcdctl snapshot restore <filename> [options]",
    "etcdctl snapshot save <filename>",
    "etcdctl snapshot status <filename>",
    "etcdctl txn [options]",
    "etcdctl user add <user name or user:password> [options]",
    "etcdctl user delete <user name>",
    "etcdctl user get <user name> [options]",
    "etcdctl user grant-role <user name> <role name>",
    "etcdctl user passwd <user name> [options]",
    "etcdctl user revoke-role <user name> <role name>",
    "etcdctl watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
];

/// Flags whose value is a string even though it looks like a number (pflag quotes strings).
const STRING_FLAGS: &[&str] = &["lease"];

/// One flag line as etcdctl's `etcdFlagUsages` writes it.
fn flag_line(a: &Arg, cmd_name: &str) -> Option<String> {
    let long = a.get_long()?;
    let mut line = match a.get_short() {
        Some(s) => format!("  -{s}, --{long}"),
        None => format!("      --{long}"),
    };
    let default = a.get_default_values().first().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
    let boolean = matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Help)
        || a.get_num_args().is_some_and(|n| n.min_values() == 0);
    if long == "help" {
        line.push_str("[=false]");
    } else if boolean {
        let default = if matches!(a.get_action(), ArgAction::SetTrue) { "false".to_string() } else { default };
        line.push_str(&format!("[={default}]"));
    } else if long == "endpoints" {
        line.push_str(&format!(
            "=[{}]",
            a.get_default_values().iter().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(",")
        ));
    } else if !STRING_FLAGS.contains(&long)
        && (default.parse::<i64>().is_ok() || rustcd_gocompat::parse_duration(&default).is_ok())
    {
        line.push_str(&format!("={default}"));
    } else {
        line.push_str(&format!("={}", crate::json::quote(default.as_bytes())));
    }
    let help = if long == "help" {
        format!("help for {cmd_name}")
    } else {
        a.get_help().map(|h| h.to_string()).unwrap_or_default()
    };
    Some(format!("{line}\t{help}"))
}

fn flag_lines(args: Vec<&Arg>, cmd_name: &str) -> String {
    let mut lines: Vec<(String, String)> =
        args.into_iter().filter_map(|a| Some((a.get_long()?.to_string(), flag_line(a, cmd_name)?))).collect();
    lines.sort();
    lines.dedup_by(|a, b| a.0 == b.0);
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Every runnable command under `cmd`, as `(path, about)`.
fn leaves(cmd: &Command, prefix: &str, out: &mut Vec<(String, String)>) {
    for sub in cmd.get_subcommands() {
        let path = if prefix.is_empty() { sub.get_name().to_string() } else { format!("{prefix} {}", sub.get_name()) };
        if sub.has_subcommands() {
            leaves(sub, &path, out);
        } else {
            out.push((path, sub.get_about().map(|a| a.to_string()).unwrap_or_default()));
        }
    }
}

/// The help of the command at `path` (names of subcommands from the root; empty for the root).
pub fn render(root: &Command, path: &[String]) -> String {
    let mut chain = vec![root];
    for name in path {
        let Some(next) = chain.last().and_then(|c| c.find_subcommand(name)) else { break };
        chain.push(next);
    }
    let Some(cmd) = chain.last().copied() else { return String::new() };
    let names: Vec<&str> = chain.iter().skip(1).map(|c| c.get_name()).collect();
    let full = if names.is_empty() { "etcdctl".to_string() } else { names.join(" ") };
    let mut out = String::new();
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    out.push_str(&format!("NAME:\n\t{full} - {about}\n\n"));
    let plain = if names.is_empty() { "etcdctl".to_string() } else { format!("etcdctl {full}") };
    let usage = USAGES
        .iter()
        .find(|u| {
            u.strip_prefix(plain.as_str())
                .is_some_and(|rest| rest.starts_with([' ']) && rest.trim_start().starts_with(['<', '[', '(']))
        })
        .map_or(plain.clone(), |u| u.to_string());
    let flags = if names.first() == Some(&"completion") && names.get(1) == Some(&"bash") { "" } else { " [flags]" };
    out.push_str(&format!("USAGE:\n\t{usage}{flags}\n\n"));
    if names.is_empty() {
        out.push_str(&format!(
            "VERSION:\n\t{}\n\nAPI VERSION:\n\t{}\n\n\n",
            rustcd_api::ETCD_VERSION,
            rustcd_api::etcd_api_version()
        ));
    }
    if let Some(long) = cmd.get_long_about() {
        out.push_str("DESCRIPTION:\n");
        for l in long.to_string().lines() {
            out.push_str(&format!("\t{l}\n"));
        }
        out.push('\n');
    }
    if cmd.has_subcommands() {
        if !names.is_empty() {
            out.push_str(&format!("API VERSION:\n\t{}\n\n\n", rustcd_api::etcd_api_version()));
        }
        let mut cmds = Vec::new();
        leaves(cmd, "", &mut cmds);
        cmds.sort();
        out.push_str("COMMANDS:\n");
        for (p, a) in cmds {
            out.push_str(&format!("\t{p}\t{a}\n"));
        }
        out.push('\n');
    }
    // Flags defined on this command are its options; those of its ancestors are global.
    let own: Vec<&Arg> = cmd.get_arguments().filter(|a| a.get_long().is_some() && !a.is_global_set()).collect();
    let inherited: Vec<&Arg> = chain[..chain.len() - 1]
        .iter()
        .flat_map(|c| c.get_arguments())
        .filter(|a| a.is_global_set() && a.get_long().is_some())
        .collect();
    let help_arg = Arg::new("help").long("help").short('h').action(ArgAction::Help);
    let mut local = own;
    if names.is_empty() {
        local = cmd.get_arguments().filter(|a| a.get_long().is_some()).collect();
    }
    local.push(&help_arg);
    out.push_str("OPTIONS:\n");
    out.push_str(&flag_lines(local, cmd.get_name()));
    out.push('\n');
    if !names.is_empty() {
        out.push_str("GLOBAL OPTIONS:\n");
        out.push_str(&flag_lines(inherited, cmd.get_name()));
        out.push('\n');
    }
    tabwrite(&out)
}

/// Go's `tabwriter.NewWriter(w, 0, 8, 1, '\t', 0)`: cells end at tabs, each column of
/// consecutive lines is padded with tabs to the widest cell plus one, rounded up to 8.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

fn format_block(lines: &[Vec<&str>], mut line0: usize, line1: usize, widths: &mut Vec<usize>, out: &mut String) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column >= lines[this].len() - 1 {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column < lines[this].len() - 1 {
            width = width.max(lines[this][column].chars().count() + 1);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for (i, cells) in lines.iter().enumerate().take(to).skip(from) {
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j < widths.len() && j < cells.len() - 1 {
                let cell = widths[j].div_ceil(8) * 8;
                let n = cell - c.chars().count();
                out.push_str(&"\t".repeat(n.div_ceil(8)));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tabwrite;

    #[test]
    fn tabs_align_like_go_tabwriter() {
        let text = "OPTIONS:\n      --cacert=\"\"\tverify\n      --insecure-skip-tls-verify[=false]\tskip\n\n\tgrant\tCreates\n\tkeep-alive\tKeeps\n";
        let want = "OPTIONS:\n      --cacert=\"\"\t\t\t\tverify\n      --insecure-skip-tls-verify[=false]\tskip\n\n\tgrant\t\tCreates\n\tkeep-alive\tKeeps\n";
        assert_eq!(tabwrite(text), want);
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum CompletionCmd {
    /// Generate the autocompletion script for bash
    #[command(long_about = r#"Generate the autocompletion script for the bash shell.

This script depends on the 'bash-completion' package.
If it is not installed already, you can install it via your OS's package manager.

To load completions in your current shell session:

	source <(etcdctl completion bash)

To load completions for every new session, execute once:

#### Linux:

	etcdctl completion bash > /etc/bash_completion.d/etcdctl

#### macOS:

	etcdctl completion bash > $(brew --prefix)/etc/bash_completion.d/etcdctl

You will need to start a new shell for this setup to take effect."#)]
    Bash(CompletionArgs),
    /// Generate the autocompletion script for fish
    #[command(long_about = r#"Generate the autocompletion script for the fish shell.

To load completions in your current shell session:

	etcdctl completion fish | source

To load completions for every new session, execute once:

	etcdctl completion fish > ~/.config/fish/completions/etcdctl.fish

You will need to start a new shell for this setup to take effect."#)]
    Fish(CompletionArgs),
    /// Generate the autocompletion script for powershell
    #[command(long_about = r#"Generate the autocompletion script for powershell.

To load completions in your current shell session:

	etcdctl completion powershell | Out-String | Invoke-Expression

To load completions for every new session, add the output of the above command
to your powershell profile."#)]
    Powershell(CompletionArgs),
    /// Generate the autocompletion script for zsh
    #[command(long_about = r#"Generate the autocompletion script for the zsh shell.

If shell completion is not already enabled in your environment you will need
to enable it.  You can execute the following once:

	echo "autoload -U compinit; compinit" >> ~/.zshrc

To load completions in your current shell session:

	source <(etcdctl completion zsh); compdef _etcdctl etcdctl

To load completions for every new session, execute once:

#### Linux:

	etcdctl completion zsh > "${fpath[1]}/_etcdctl"

#### macOS:

	etcdctl completion zsh > $(brew --prefix)/share/zsh/site-functions/_etcdctl

You will need to start a new shell for this setup to take effect."#)]
    Zsh(CompletionArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// disable completion descriptions
    #[arg(long = "no-descriptions")]
    pub no_descriptions: bool,
}

/// A completion script that completes command names (and, for bash, flags) from the tree.
pub fn completion(root: &Command, cmd: CompletionCmd) -> String {
    let mut cmds = Vec::new();
    leaves(root, "", &mut cmds);
    let top: Vec<String> = root.get_subcommands().map(|c| c.get_name().to_string()).collect();
    let words = top.join(" ");
    match cmd {
        CompletionCmd::Bash(_) => format!(
            "# bash completion for etcdctl\n_etcdctl() {{\n    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n    if [ \"$COMP_CWORD\" -eq 1 ]; then\n        COMPREPLY=( $(compgen -W \"{words}\" -- \"$cur\") )\n        return\n    fi\n    case \"${{COMP_WORDS[1]}}\" in\n{}    esac\n}}\ncomplete -F _etcdctl etcdctl\n",
            root.get_subcommands()
                .filter(|c| c.has_subcommands())
                .map(|c| {
                    let subs: Vec<&str> = c.get_subcommands().map(|s| s.get_name()).collect();
                    format!(
                        "        {}) COMPREPLY=( $(compgen -W \"{}\" -- \"$cur\") ) ;;\n",
                        c.get_name(),
                        subs.join(" ")
                    )
                })
                .collect::<String>()
        ),
        CompletionCmd::Zsh(_) => format!("#compdef etcdctl\n_arguments '1: :({words})'\n"),
        CompletionCmd::Fish(_) => {
            top.iter().map(|w| format!("complete -c etcdctl -n '__fish_use_subcommand' -a {w}\n")).collect()
        }
        CompletionCmd::Powershell(_) => format!(
            "Register-ArgumentCompleter -Native -CommandName etcdctl -ScriptBlock {{\n    param($wordToComplete)\n    '{}' -split ' ' | Where-Object {{ $_ -like \"$wordToComplete*\" }}\n}}\n",
            words
        ),
    }
}
