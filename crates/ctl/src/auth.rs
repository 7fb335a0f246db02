//! `etcdctl auth`, `user` and `role`: the Auth service's commands.

use std::io::BufRead;

use clap::Subcommand;
use rustcd_api::authpb::{Permission, UserAddOptions};
use rustcd_api::etcdserverpb::*;

use crate::json::{Obj, base64, string};
use crate::print::{emit, with_header};
use crate::{CtlError, Ctx};
use rustcd_gocompat::prefix_end;

/// The server's answer to `AuthEnable` when root lacks the root role (etcd's
/// `ErrRootRoleNotExist`).
const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";

#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Disables authentication
    Disable,
    /// Enables authentication
    Enable,
    /// Returns authentication status
    Status,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Adds a new user
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long = "new-user-password", default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long = "no-password")]
        no_password: bool,
        args: Vec<String>,
    },
    /// Deletes a user
    Delete { args: Vec<String> },
    /// Gets detailed information of a user
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
        args: Vec<String>,
    },
    /// Lists all users
    List,
    /// Changes password of user
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        interactive: bool,
        args: Vec<String>,
    },
    /// Grants a role to a user
    GrantRole { args: Vec<String> },
    /// Revokes a role from a user
    RevokeRole { args: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Adds a new role
    Add { args: Vec<String> },
    /// Deletes a role
    Delete { args: Vec<String> },
    /// Gets detailed information of a role
    Get { args: Vec<String> },
    /// Lists all roles
    List,
    /// Grants a key to a role
    GrantPermission {
        /// grant a prefix permission
        #[arg(long)]
        prefix: bool,
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long = "from-key")]
        from_key: bool,
        args: Vec<String>,
    },
    /// Revokes a key from a role
    RevokePermission {
        /// revoke a prefix permission
        #[arg(long)]
        prefix: bool,
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long = "from-key")]
        from_key: bool,
        args: Vec<String>,
    },
}

pub async fn auth(ctx: &Ctx, cmd: AuthCmd) -> Result<(), CtlError> {
    match cmd {
        AuthCmd::Enable => {
            // As etcdctl: without a root role, make it and grant it to root, then try again.
            let r = loop {
                match retried!(ctx, auth.auth_enable(AuthEnableRequest {})) {
                    Err(e) if e.msg == ROOT_ROLE_NOT_EXIST => {
                        retried!(ctx, auth.role_add(AuthRoleAddRequest { name: "root".into() }))?;
                        let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
                        retried!(ctx, auth.user_grant_role(grant))?;
                    }
                    r => break r?,
                }
            };
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || "Authentication Enabled\n".into());
        }
        AuthCmd::Disable => {
            let r = retried!(ctx, auth.auth_disable(AuthDisableRequest {}))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || "Authentication Disabled\n".into());
        }
        AuthCmd::Status => {
            let r = retried!(ctx, auth.auth_status(AuthStatusRequest {}))?;
            let json = || with_header(&r.header, |o| o.bool("enabled", r.enabled).int("authRevision", r.auth_revision));
            emit(ctx.format, &r, json, || {
                format!("Authentication Status: {}\nAuthRevision: {}\n", r.enabled, r.auth_revision)
            });
        }
    }
    Ok(())
}

fn one<'a>(args: &'a [String], msg: &str) -> Result<&'a str, CtlError> {
    match args {
        [x] => Ok(x),
        _ => Err(CtlError::bad_args(msg)),
    }
}

fn two<'a>(args: &'a [String], msg: &str) -> Result<(&'a str, &'a str), CtlError> {
    match args {
        [x, y] => Ok((x, y)),
        _ => Err(CtlError::bad_args(msg)),
    }
}

/// One line of stdin after `prompt` on stderr.
fn read_password(prompt: &str) -> Result<String, CtlError> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CtlError::new(1, &e.to_string()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A new password for `name`: typed twice when interactive, one line of stdin otherwise.
fn password_for(name: &str, interactive: bool) -> Result<String, CtlError> {
    if !interactive {
        return read_password("");
    }
    let p = read_password(&format!("Password of {name}: "))?;
    let again = read_password(&format!("Type password of {name} again for confirmation: "))?;
    if again != p {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(p)
}

/// `user add`'s name and password, read before connecting as etcdctl reads them:
/// --no-password, then --new-user-password, then `name:password`, else a password from stdin.
fn user_add_credentials(
    args: Vec<String>,
    new_user_password: String,
    no_password: bool,
    interactive: bool,
) -> Result<(String, String), CtlError> {
    let spec = one(&args, "user add command requires user name as its argument")?;
    // etcdctl's order: --no-password, then --new-user-password, then name:password
    let (name, password) = if no_password {
        (spec.to_string(), String::new())
    } else if !new_user_password.is_empty() {
        (spec.to_string(), new_user_password)
    } else {
        match spec.split_once(':') {
            Some(("", _)) => return Err(CtlError::bad_args("empty user name is not allowed")),
            Some((n, p)) => (n.to_string(), p.to_string()),
            None => (spec.to_string(), password_for(spec, interactive)?),
        }
    };
    Ok((name, password))
}

pub async fn user(ctx: &Ctx, cmd: UserCmd) -> Result<(), CtlError> {
    let add = match &cmd {
        UserCmd::Add { new_user_password, no_password, args, interactive } => {
            Some(user_add_credentials(args.clone(), new_user_password.clone(), *no_password, *interactive)?)
        }
        _ => None,
    };
    match cmd {
        UserCmd::Add { no_password, .. } => {
            let (name, password) = add.unwrap_or_default();
            let options = Some(UserAddOptions { no_password });
            let req = AuthUserAddRequest { name: name.clone(), password, options, ..Default::default() };
            let r = retried!(ctx, auth.user_add(req))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || format!("User {name} created\n"));
        }
        UserCmd::Delete { args } => {
            let name = one(&args, "user delete command requires user name as its argument")?;
            let r = retried!(ctx, auth.user_delete(AuthUserDeleteRequest { name: name.to_string() }))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || format!("User {name} deleted\n"));
        }
        UserCmd::Get { detail, args } => {
            let name = one(&args, "user get command requires user name as its argument")?;
            let r = retried!(ctx, auth.user_get(AuthUserGetRequest { name: name.to_string() }))?;
            if !detail {
                let json = || with_header(&r.header, |o| o.list("roles", r.roles.iter().map(|x| string(x)).collect()));
                emit(ctx.format, &r, json, || {
                    format!("User: {name}\nRoles:{}\n", r.roles.iter().map(|x| format!(" {x}")).collect::<String>())
                });
            } else {
                println!("User: {name}");
                for role in &r.roles {
                    println!();
                    let perms = retried!(ctx, auth.role_get(AuthRoleGetRequest { role: role.clone() }))?;
                    emit(ctx.format, &perms, || role_json(&perms), || role_text(role, &perms.perm));
                }
            }
        }
        UserCmd::List => {
            let r = retried!(ctx, auth.user_list(AuthUserListRequest {}))?;
            let json = || with_header(&r.header, |o| o.list("users", r.users.iter().map(|x| string(x)).collect()));
            emit(ctx.format, &r, json, || r.users.iter().map(|u| format!("{u}\n")).collect());
        }
        UserCmd::Passwd { interactive, args } => {
            let name = one(&args, "user passwd command requires user name as its argument")?;
            let password = password_for(name, interactive)?;
            let req = AuthUserChangePasswordRequest { name: name.to_string(), password, ..Default::default() };
            let r = retried!(ctx, auth.user_change_password(req))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || "Password updated\n".into());
        }
        UserCmd::GrantRole { args } => {
            let (user, role) = two(&args, "user grant command requires user name and role name as its argument")?;
            let req = AuthUserGrantRoleRequest { user: user.to_string(), role: role.to_string() };
            let r = retried!(ctx, auth.user_grant_role(req))?;
            emit(
                ctx.format,
                &r,
                || with_header(&r.header, |o| o),
                || format!("Role {role} is granted to user {user}\n"),
            );
        }
        UserCmd::RevokeRole { args } => {
            let (name, role) = two(&args, "user revoke-role requires user name and role name as its argument")?;
            let req = AuthUserRevokeRoleRequest { name: name.to_string(), role: role.to_string() };
            let r = retried!(ctx, auth.user_revoke_role(req))?;
            emit(
                ctx.format,
                &r,
                || with_header(&r.header, |o| o),
                || format!("Role {role} is revoked from user {name}\n"),
            );
        }
    }
    Ok(())
}

/// The JSON of a role's permissions (`authpb.Permission` fields).
fn role_json(r: &AuthRoleGetResponse) -> String {
    let perms = r
        .perm
        .iter()
        .map(|p| {
            let o = Obj::new().int("permType", p.perm_type);
            let o = if p.key.is_empty() { o } else { o.raw("key", &format!("\"{}\"", base64(&p.key))) };
            let o =
                if p.range_end.is_empty() { o } else { o.raw("range_end", &format!("\"{}\"", base64(&p.range_end))) };
            o.end()
        })
        .collect();
    with_header(&r.header, |o| o.list("perm", perms))
}

/// A role's permissions as etcdctl's simple printer lists them.
fn role_text(role: &str, perms: &[Permission]) -> String {
    let mut out = format!("Role {role}\n");
    for (title, types) in [("KV Read:", [0, 2]), ("KV Write:", [1, 2])] {
        out.push_str(title);
        out.push('\n');
        for p in perms.iter().filter(|p| types.contains(&p.perm_type)) {
            let key = String::from_utf8_lossy(&p.key);
            if p.range_end.is_empty() {
                out.push_str(&format!("\t{key}\n"));
                continue;
            }
            let end = String::from_utf8_lossy(&p.range_end);
            let mut line =
                if &p.range_end[..] != b"\0" { format!("\t[{key}, {end})") } else { format!("\t[{key}, <open ended>") };
            if !p.key.is_empty() && prefix_end(&p.key) == p.range_end {
                line.push_str(&format!(" (prefix {key})"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `key [range_end]` with `--prefix`/`--from-key` as a permission's key range.
fn perm_range(key: &str, end: Option<&String>, prefix: bool, from_key: bool) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    if prefix && from_key {
        return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
    }
    let k = key.as_bytes().to_vec();
    Ok(match (end, prefix, from_key) {
        (Some(_), true, _) | (Some(_), _, true) => {
            return Err(CtlError::bad_args("unexpected endkey argument with --prefix or --from-key"));
        }
        (Some(e), _, _) => (k, e.as_bytes().to_vec()),
        (None, true, _) if k.is_empty() => (vec![0], vec![0]),
        (None, true, _) => (k.clone(), prefix_end(&k)),
        (None, _, true) => (if k.is_empty() { vec![0] } else { k }, vec![0]),
        (None, false, false) => (k, Vec::new()),
    })
}

pub async fn role(ctx: &Ctx, cmd: RoleCmd) -> Result<(), CtlError> {
    match cmd {
        RoleCmd::Add { args } => {
            let name = one(&args, "role add command requires role name as its argument")?;
            let r = retried!(ctx, auth.role_add(AuthRoleAddRequest { name: name.to_string() }))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || format!("Role {name} created\n"));
        }
        RoleCmd::Delete { args } => {
            let role = one(&args, "role delete command requires role name as its argument")?;
            let r = retried!(ctx, auth.role_delete(AuthRoleDeleteRequest { role: role.to_string() }))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || format!("Role {role} deleted\n"));
        }
        RoleCmd::Get { args } => {
            let role = one(&args, "role get command requires role name as its argument")?;
            let r = retried!(ctx, auth.role_get(AuthRoleGetRequest { role: role.to_string() }))?;
            emit(ctx.format, &r, || role_json(&r), || role_text(role, &r.perm));
        }
        RoleCmd::List => {
            let r = retried!(ctx, auth.role_list(AuthRoleListRequest {}))?;
            let json = || with_header(&r.header, |o| o.list("roles", r.roles.iter().map(|x| string(x)).collect()));
            emit(ctx.format, &r, json, || r.roles.iter().map(|x| format!("{x}\n")).collect());
        }
        RoleCmd::GrantPermission { prefix, from_key, args } => {
            if args.len() < 3 || args.len() > 4 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match args[1].to_uppercase().as_str() {
                "READ" => 0,
                "WRITE" => 1,
                "READWRITE" => 2,
                _ => return Err(CtlError::bad_args(&format!("invalid permission type: {}", args[1]))),
            };
            let (key, range_end) = perm_range(&args[2], args.get(3), prefix, from_key)?;
            let perm = Some(Permission { perm_type, key: key.into(), range_end: range_end.into() });
            let req = AuthRoleGrantPermissionRequest { name: args[0].clone(), perm };
            let r = retried!(ctx, auth.role_grant_permission(req))?;
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || format!("Role {} updated\n", args[0]));
        }
        RoleCmd::RevokePermission { prefix, from_key, args } => {
            if args.len() < 2 || args.len() > 3 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&args[1], args.get(2), prefix, from_key)?;
            // etcdctl prints the key as given (an empty key with --from-key means every key)
            let (k, e) = (args[1].clone(), String::from_utf8_lossy(&range_end).into_owned());
            let req = AuthRoleRevokePermissionRequest {
                role: args[0].clone(),
                key: key.clone().into(),
                range_end: range_end.clone().into(),
            };
            let r = retried!(ctx, auth.role_revoke_permission(req))?;
            let text = if range_end.is_empty() {
                format!("Permission of key {k} is revoked from role {}\n", args[0])
            } else if range_end != b"\0" {
                format!("Permission of range [{k}, {e}) is revoked from role {}\n", args[0])
            } else {
                format!("Permission of range [{k}, <open ended> is revoked from role {}\n", args[0])
            };
            emit(ctx.format, &r, || with_header(&r.header, |o| o), || text);
        }
    }
    Ok(())
}
