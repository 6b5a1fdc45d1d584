//! Customers: the businesses a platform onboards, each owning its phone numbers and setup links.
//! Field rules, the unique `external_customer_id`, and deletion (which detaches or refuses
//! connected numbers).

use serde::Deserialize;
use uuid::Uuid;

use super::field_error::{double_option, FieldError};
use super::number_directory::NumberDirectory;
use crate::store::{
    Customer, CustomerFilter, CustomerPatch, DynStore, NewCustomer, Page, StoreError,
};

const MAX_NAME_LEN: usize = 255;
const MAX_EXTERNAL_ID_LEN: usize = 255;

/// Body of a create or PATCH (`{"customer": {…}}`). `null` clears `external_customer_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub external_customer_id: Option<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// Unknown, or another project's: the same to the caller.
    #[error("customer not found")]
    NotFound,
    #[error("a customer with this external_customer_id already exists in the project")]
    ExternalIdTaken,
    /// Deleting without `force` while numbers are connected.
    #[error("the customer has connected phone numbers")]
    HasNumbers,
    #[error(transparent)]
    Store(StoreError),
}

/// A write's store error: a conflict can only be the external id.
fn write_error(error: StoreError) -> CustomerError {
    match error {
        StoreError::Conflict { .. } => CustomerError::ExternalIdTaken,
        StoreError::NotFound => CustomerError::NotFound,
        other => CustomerError::Store(other),
    }
}

fn check(input: &CustomerInput, creating: bool) -> Result<(), CustomerError> {
    let mut errors = Vec::new();
    match input.name.as_deref().map(str::trim) {
        None if creating => errors.push(FieldError::new("name", "is required")),
        Some("") => errors.push(FieldError::new("name", "must not be empty")),
        Some(name) if name.chars().count() > MAX_NAME_LEN => errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        )),
        _ => {}
    }
    if let Some(Some(external)) = &input.external_customer_id {
        if external.trim().is_empty() || external.len() > MAX_EXTERNAL_ID_LEN {
            errors.push(FieldError::new(
                "external_customer_id",
                format!("must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CustomerError::Invalid(errors))
    }
}

/// The customer service. Deleting a customer changes its numbers, so it makes the caches forget
/// numbers.
#[derive(Clone)]
pub struct Customers {
    store: DynStore,
    numbers: NumberDirectory,
}

impl Customers {
    pub fn new(store: DynStore, numbers: NumberDirectory) -> Self {
        Self { store, numbers }
    }

    pub async fn create(
        &self,
        project_id: Uuid,
        input: CustomerInput,
    ) -> Result<Customer, CustomerError> {
        check(&input, true)?;
        let new = NewCustomer {
            project_id,
            name: input.name.unwrap_or_default().trim().to_owned(),
            external_customer_id: input.external_customer_id.flatten(),
        };
        self.store.create_customer(new).await.map_err(write_error)
    }

    /// A customer of `project_id`.
    pub async fn get(&self, project_id: Uuid, id: Uuid) -> Result<Customer, CustomerError> {
        self.store
            .get_customer(project_id, id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => CustomerError::NotFound,
                other => CustomerError::Store(other),
            })
    }

    pub async fn list(
        &self,
        project_id: Uuid,
        filter: &CustomerFilter,
        page: u32,
        per_page: u32,
    ) -> Result<Page<Customer>, StoreError> {
        self.store
            .list_customers(project_id, filter, page, per_page)
            .await
    }

    /// Applies a PATCH: absent fields are left as they are.
    pub async fn update(
        &self,
        project_id: Uuid,
        id: Uuid,
        input: CustomerInput,
    ) -> Result<Customer, CustomerError> {
        check(&input, false)?;
        let patch = CustomerPatch {
            name: input.name.map(|n| n.trim().to_owned()),
            external_customer_id: input.external_customer_id,
        };
        self.store
            .update_customer(project_id, id, &patch)
            .await
            .map_err(write_error)
    }

    /// Deletes a customer; with `force` its numbers stay connected to the project without a
    /// customer, without it a customer with numbers is refused (`HasNumbers`).
    pub async fn delete(
        &self,
        project_id: Uuid,
        id: Uuid,
        force: bool,
    ) -> Result<(), CustomerError> {
        self.store
            .delete_customer(project_id, id, force)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => CustomerError::HasNumbers,
                StoreError::NotFound => CustomerError::NotFound,
                other => CustomerError::Store(other),
            })?;
        self.numbers.invalidate();
        Ok(())
    }
}
