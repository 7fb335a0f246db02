//! The Auth service: each RPC is one call of the server's typed auth API
//! ([`crate::etcdserver::v3::auth`]), for the request's caller.

use std::sync::Arc;

use rustcd_api::etcdserverpb::auth_server::Auth;
use rustcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::api;
use crate::etcdserver::server::EtcdServer;
use crate::etcdserver::v3::auth::with_auth_requests;

pub struct AuthService(pub Arc<EtcdServer>);

/// The whole impl is made by one macro so that `async_trait` sees every method: the auth
/// requests the typed API lists ([`with_auth_requests`]), and Authenticate.
macro_rules! auth_impl {
    ($($name:ident($req:ty) -> $resp:ty = $op:ident;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $(
                async fn $name(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Ok(Response::new(self.0.$name(&api::caller::of(&req), req.into_inner()).await?))
                }
            )*

            async fn authenticate(
                &self,
                req: Request<AuthenticateRequest>,
            ) -> Result<Response<AuthenticateResponse>, Status> {
                Ok(Response::new(self.0.authenticate(&api::caller::of(&req), req.into_inner()).await?))
            }
        }
    };
}

with_auth_requests!(auth_impl);
