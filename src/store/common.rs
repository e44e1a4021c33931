//! Role implementations whose code is the same for both back-ends: partners, accounts, the kubo
//! ledger and idempotent responses read and write plain rows with the portable SQL of
//! `store::sql`, so one macro expands them for `SqliteStore` and `PostgresStore` (each has a
//! `pool` and an `insert_account`). What differs per back-end lives in its own module.

/// Implements `PartnerStore`, `AccountStore`, `LedgerStore` and `IdempotencyStore` for `$store`,
/// and the parts of the other roles that are the same on both back-ends as inherent helpers
/// (`change_key_row`, `partner_key_rows`, `live_key_rows`, `daily_rows`, `llm_rows_of_key`).
macro_rules! row_stores {
    // `$collate`: what makes a text id compare byte by byte (PostgreSQL's default collation
    // may not), for the (time, id) order of the paged lists.
    ($store:ty, $collate:literal) => {
        const _: () = {
            /// The (time, id) position of a paged list, compared byte by byte.
            const AFTER: &str = concat!("(id", $collate, ") > ($3", $collate, ")");
            const ORDER: &str = concat!("id", $collate);
            use uuid::Uuid;
            use $crate::domain::key::{Account, Partner};
            use $crate::store::rows::{self, AccountRow, PartnerRow, int};
            use $crate::store::sql::{
                ACCOUNT_COLUMNS, ADD_BALANCE, DEBIT_IF_COVERED, INSERT_LEDGER, INSERT_PARTNER,
                LEDGER_COLUMNS, UPDATE_PARTNER, UPSERT_IDEMPOTENT, select_accounts,
                select_partners,
            };
            use $crate::domain::money::{LedgerEntry, LedgerKind};
            use $crate::store::{Page, PlanChange, PlanMove, StoreError, write_error};
            impl $store {
                /// A page of the partner's keys, only those matching `search` if given
                /// (`sql::KEY_SEARCH`), oldest first.
                async fn partner_key_rows(
                    &self,
                    partner_id: Uuid,
                    page: Page,
                    search: Option<&str>,
                ) -> Result<Vec<$crate::domain::key::Key>, StoreError> {
                    use $crate::store::sql::{KEY_SEARCH, like_pattern, select_keys};
                    let sql = format!(
                        "{} WHERE partner_id = $1 \
                         AND (created_at > $2 OR (created_at = $2 AND {AFTER})) \
                         AND {KEY_SEARCH} ORDER BY created_at, {ORDER} LIMIT $4",
                        select_keys!("")
                    );
                    let search = search.unwrap_or_default();
                    rows::bind_page(sqlx::query_as::<_, rows::KeyRow>(&sql), partner_id, page)
                        .bind(search)
                        .bind(like_pattern(search))
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map($crate::domain::key::Key::try_from)
                        .collect()
                }

                /// A page of the account's keys that are not revoked, oldest first.
                async fn live_key_rows(
                    &self,
                    account_id: Uuid,
                    page: Page,
                ) -> Result<Vec<$crate::domain::key::Key>, StoreError> {
                    use $crate::store::sql::select_keys;
                    let sql = format!(
                        "{} WHERE account_id = $1 AND revoked_at IS NULL \
                         AND (created_at > $2 OR (created_at = $2 AND {AFTER})) \
                         ORDER BY created_at, {ORDER} LIMIT $4",
                        select_keys!("")
                    );
                    rows::bind_page(sqlx::query_as::<_, rows::KeyRow>(&sql), account_id, page)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map($crate::domain::key::Key::try_from)
                        .collect()
                }

                /// Applies a key change and reads the row back, in one transaction.
                async fn change_key_row(
                    &self,
                    id: Uuid,
                    change: &$crate::store::KeyChange,
                ) -> Result<Option<$crate::domain::key::Key>, StoreError> {
                    use $crate::store::KeyChange;
                    use $crate::store::rows::KeyRow;
                    use $crate::store::sql::{EDIT_KEY, select_keys};
                    let id = id.to_string();
                    let mut tx = self.pool.begin().await?;
                    match change {
                        KeyChange::SetDisabled { disabled, at, by } => {
                            sqlx::query(
                                "UPDATE keys SET disabled = $1, status_changed_at = $2, \
                                 status_changed_by = $3 WHERE id = $4 AND disabled <> $1",
                            )
                            .bind(*disabled)
                            .bind(*at)
                            .bind(by)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                        }
                        // Revocation is permanent: the first `revoked_at/by` stay.
                        KeyChange::Revoke { at, by } => {
                            sqlx::query(
                                "UPDATE keys SET revoked_at = $1, revoked_by = $2 \
                                 WHERE id = $3 AND revoked_at IS NULL",
                            )
                            .bind(*at)
                            .bind(by)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                        }
                        KeyChange::Edit(key) => {
                            rows::bind_edit(sqlx::query(EDIT_KEY), key)
                                .bind(&id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    let key = sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE id = $1"))
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map($crate::domain::key::Key::try_from)
                        .transpose()?;
                    tx.commit().await?;
                    Ok(key)
                }

                /// `(day, metric, value)` daily sums of one scope between two days.
                async fn daily_rows(
                    &self,
                    scope: &str,
                    id: Uuid,
                    from: &str,
                    to: &str,
                ) -> Result<Vec<(String, String, u64)>, StoreError> {
                    let rows: Vec<(String, String, i64)> =
                        sqlx::query_as($crate::store::sql::USAGE_DAILY)
                            .bind(scope)
                            .bind(id.to_string())
                            .bind(from)
                            .bind(to)
                            .fetch_all(&self.pool)
                            .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(day, metric, value)| (day, metric, value.max(0) as u64))
                        .collect())
                }

                /// A key's lifetime LLM usage by model.
                async fn llm_rows_of_key(
                    &self,
                    key: Uuid,
                ) -> Result<Vec<$crate::meter::llm_usage::LlmRow>, StoreError> {
                    let rows = sqlx::query_as($crate::store::sql::LLM_USAGE_OF_KEY)
                        .bind(key.to_string())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows::llm_rows(key, rows))
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::PartnerStore for $store {
                async fn create_partner(
                    &self,
                    partner: &Partner,
                    default_account: &Account,
                ) -> Result<(), StoreError> {
                    debug_assert_eq!(partner.id, default_account.partner_id);
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(INSERT_PARTNER)
                        .bind(partner.id.to_string())
                        .bind(&partner.name)
                        .bind(&partner.token_prefix)
                        .bind(&partner.token_hash)
                        .bind(partner.balance_micros)
                        .bind(rows::int(partner.tier_multiplier_ppm))
                        .bind(partner.suspended)
                        .bind(partner.created_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(write_error)?;
                    Self::insert_account(&mut tx, default_account, partner.id, true).await?;
                    if partner.balance_micros != 0 {
                        let entry = LedgerEntry::new(
                            partner.id,
                            partner.created_at,
                            LedgerKind::Opening,
                            partner.balance_micros,
                        );
                        rows::bind_ledger(sqlx::query(INSERT_LEDGER), &entry)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn partners_by_token_prefix(
                    &self,
                    prefix: &str,
                ) -> Result<Vec<Partner>, StoreError> {
                    sqlx::query_as::<_, PartnerRow>(select_partners!(
                        " WHERE token_prefix = $1 ORDER BY created_at, id"
                    ))
                    .bind(prefix)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(Partner::try_from)
                    .collect()
                }

                async fn get_partner(&self, id: Uuid) -> Result<Option<Partner>, StoreError> {
                    sqlx::query_as::<_, PartnerRow>(select_partners!(" WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Partner::try_from)
                        .transpose()
                }

                async fn load_partners(&self) -> Result<Vec<Partner>, StoreError> {
                    sqlx::query_as::<_, PartnerRow>(select_partners!(" ORDER BY created_at, id"))
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Partner::try_from)
                        .collect()
                }

                async fn partners_page(&self, page: Page) -> Result<Vec<Partner>, StoreError> {
                    let (at, id, limit) = page.binds();
                    let sql = format!(
                        "{} WHERE (created_at > $1 OR (created_at = $1 AND {})) \
                         ORDER BY created_at, {ORDER} LIMIT $3",
                        select_partners!(""),
                        AFTER.replace("$3", "$2")
                    );
                    sqlx::query_as::<_, PartnerRow>(&sql)
                    .bind(at)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(Partner::try_from)
                    .collect()
                }

                async fn set_partner_token(
                    &self,
                    id: Uuid,
                    prefix: &str,
                    hash: &str,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(
                        "UPDATE partners SET token_prefix = $1, token_hash = $2 WHERE id = $3",
                    )
                    .bind(prefix)
                    .bind(hash)
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn update_partner(
                    &self,
                    id: Uuid,
                    tier_ppm: Option<u64>,
                    suspended: Option<bool>,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(UPDATE_PARTNER)
                        .bind(tier_ppm.map(rows::int))
                        .bind(suspended)
                        .bind(id.to_string())
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn add_partner_balance(
                    &self,
                    id: Uuid,
                    micros: i64,
                    at: i64,
                ) -> Result<Option<i64>, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let balance: Option<i64> = sqlx::query_scalar(ADD_BALANCE)
                        .bind(micros)
                        .bind(id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if balance.is_some() {
                        let entry = LedgerEntry::new(id, at, LedgerKind::TopUp, micros);
                        rows::bind_ledger(sqlx::query(INSERT_LEDGER), &entry)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(balance)
                }

                async fn ledger_page(
                    &self,
                    partner_id: Uuid,
                    page: Page,
                ) -> Result<Vec<LedgerEntry>, StoreError> {
                    let sql = format!(
                        "SELECT {LEDGER_COLUMNS} FROM money_ledger WHERE partner_id = $1 \
                         AND (at > $2 OR (at = $2 AND {AFTER})) ORDER BY at, {ORDER} LIMIT $4"
                    );
                    rows::bind_page(sqlx::query_as::<_, rows::LedgerRow>(&sql), partner_id, page)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(LedgerEntry::try_from)
                        .collect()
                }

                async fn plan_charges_since(
                    &self,
                    partner_id: Uuid,
                    since: i64,
                ) -> Result<Vec<(i64, i64)>, StoreError> {
                    Ok(sqlx::query_as(
                        "SELECT at, amount_micros FROM money_ledger WHERE partner_id = $1 \
                         AND kind = 'plan_change' AND at >= $2",
                    )
                    .bind(partner_id.to_string())
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::AccountStore for $store {
                async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    Self::insert_account(&mut conn, account, account.partner_id, false).await
                }

                async fn default_account(
                    &self,
                    partner_id: Uuid,
                ) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(select_accounts!(
                        " WHERE partner_id = $1 AND is_default = $2"
                    ))
                    .bind(partner_id.to_string())
                    .bind(true)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Account::try_from)
                    .transpose()
                }

                async fn account_by_external_id(
                    &self,
                    partner_id: Uuid,
                    external_id: &str,
                ) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(select_accounts!(
                        " WHERE partner_id = $1 AND external_id = $2 AND is_default = $3"
                    ))
                    .bind(partner_id.to_string())
                    .bind(external_id)
                    .bind(false)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Account::try_from)
                    .transpose()
                }

                async fn get_account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(select_accounts!(" WHERE id = $1"))
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?
                        .map(Account::try_from)
                        .transpose()
                }

                async fn load_accounts(&self) -> Result<Vec<Account>, StoreError> {
                    sqlx::query_as::<_, AccountRow>(select_accounts!(" ORDER BY created_at, id"))
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Account::try_from)
                        .collect()
                }

                async fn accounts_page(
                    &self,
                    partner_id: Uuid,
                    page: Page,
                ) -> Result<Vec<Account>, StoreError> {
                    let sql = format!(
                        "{} WHERE partner_id = $1 AND NOT is_default \
                         AND (created_at > $2 OR (created_at = $2 AND {AFTER})) \
                         ORDER BY created_at, {ORDER} LIMIT $4",
                        select_accounts!("")
                    );
                    rows::bind_page(sqlx::query_as::<_, AccountRow>(&sql), partner_id, page)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Account::try_from)
                        .collect()
                }

                async fn plan_period(
                    &self,
                    account_id: Uuid,
                ) -> Result<Option<(Option<String>, u64)>, StoreError> {
                    let row: Option<(Option<String>, i64)> = sqlx::query_as(
                        "SELECT plan_period, plan_period_peak_micros FROM accounts WHERE id = $1",
                    )
                    .bind(account_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|(period, peak)| (period, u64::try_from(peak).unwrap_or(0))))
                }

                async fn set_account_plan(
                    &self,
                    account_id: Uuid,
                    change: &PlanMove,
                ) -> Result<PlanChange, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    // The write comes first, so concurrent writers queue on the busy timeout.
                    // Only if the plan, period and peak are still what the charge was
                    // computed from (another instance may have moved the account meanwhile).
                    let sql = format!(
                        "UPDATE accounts SET plan_id = $1, plan_period = $2, \
                         plan_period_peak_micros = $3 WHERE id = $4 \
                         AND COALESCE(plan_id, -1) = $5 AND COALESCE(plan_period, '') = $6 \
                         AND plan_period_peak_micros = $7 RETURNING {ACCOUNT_COLUMNS}"
                    );
                    let (plan, period, peak) = &change.expected;
                    let row = sqlx::query_as::<_, AccountRow>(&sql)
                        .bind(change.plan_id)
                        .bind(&change.period)
                        .bind(int(change.peak_micros))
                        .bind(account_id.to_string())
                        .bind(plan.unwrap_or(-1))
                        .bind(period.clone().unwrap_or_default())
                        .bind(int(*peak))
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = row else {
                        let exists: i64 =
                            sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
                                .bind(account_id.to_string())
                                .fetch_one(&mut *tx)
                                .await?;
                        return Ok(match exists {
                            0 => PlanChange::NoAccount,
                            _ => PlanChange::Raced,
                        });
                    };
                    let account = Account::try_from(row)?;
                    if change.charge_micros > 0 {
                        let charged: Option<i64> = sqlx::query_scalar(DEBIT_IF_COVERED)
                            .bind(int(change.charge_micros))
                            .bind(account.partner_id.to_string())
                            .fetch_optional(&mut *tx)
                            .await?;
                        if charged.is_none() {
                            let balance: Option<i64> = sqlx::query_scalar(
                                "SELECT balance_micros FROM partners WHERE id = $1",
                            )
                            .bind(account.partner_id.to_string())
                            .fetch_optional(&mut *tx)
                            .await?;
                            tx.rollback().await?;
                            return Ok(PlanChange::InsufficientBalance(balance.unwrap_or(0)));
                        }
                    }
                    let entry = LedgerEntry {
                        account_id: Some(account.id),
                        plan_id: Some(change.plan_id),
                        note: Some(change.note.clone()),
                        ..LedgerEntry::new(
                            account.partner_id,
                            change.at,
                            LedgerKind::PlanChange,
                            -int(change.charge_micros),
                        )
                    };
                    rows::bind_ledger(sqlx::query(INSERT_LEDGER), &entry)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(PlanChange::Changed(account))
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::LedgerStore for $store {
                async fn load_pins(&self) -> Result<Vec<$crate::store::PinRow>, StoreError> {
                    let rows: Vec<(String, String, i64, bool)> =
                        sqlx::query_as("SELECT account_id, cid, size, recursive FROM pins")
                            .fetch_all(&self.pool)
                            .await?;
                    rows.into_iter()
                        .map(|(account, cid, size, recursive)| {
                            Ok($crate::store::PinRow {
                                account_id: $crate::store::rows::account_uuid(&account)?,
                                size: u64::try_from(size).map_err(|_| {
                                    StoreError::Corrupt(format!("pin {cid}: size {size}"))
                                })?,
                                cid,
                                recursive,
                            })
                        })
                        .collect()
                }

                async fn put_pin(
                    &self,
                    pin: &$crate::store::PinRow,
                    replaces: Option<&str>,
                    now: i64,
                ) -> Result<(), StoreError> {
                    let account = pin.account_id.to_string();
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(
                        "INSERT INTO pins (account_id, cid, size, recursive, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (account_id, cid) DO UPDATE SET size = excluded.size, \
                     recursive = excluded.recursive",
                    )
                    .bind(&account)
                    .bind(&pin.cid)
                    .bind(i64::try_from(pin.size).unwrap_or(i64::MAX))
                    .bind(pin.recursive)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(old) = replaces.filter(|old| *old != pin.cid) {
                        sqlx::query("DELETE FROM pins WHERE account_id = $1 AND cid = $2")
                            .bind(&account)
                            .bind(old)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn remove_pin(&self, account: Uuid, cid: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query("DELETE FROM pins WHERE account_id = $1 AND cid = $2")
                        .bind(account.to_string())
                        .bind(cid)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn load_ipns(&self) -> Result<Vec<$crate::store::IpnsRow>, StoreError> {
                    let rows: Vec<(String, String)> =
                        sqlx::query_as("SELECT account_id, name FROM ipns_names")
                            .fetch_all(&self.pool)
                            .await?;
                    rows.into_iter()
                        .map(|(account, name)| {
                            Ok($crate::store::IpnsRow {
                                account_id: $crate::store::rows::account_uuid(&account)?,
                                name,
                            })
                        })
                        .collect()
                }

                async fn put_ipns(
                    &self,
                    account: Uuid,
                    name: &str,
                    now: i64,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO ipns_names (account_id, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id, name) DO NOTHING",
                    )
                    .bind(account.to_string())
                    .bind(name)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn remove_ipns(&self, account: Uuid, name: &str) -> Result<bool, StoreError> {
                    let done =
                        sqlx::query("DELETE FROM ipns_names WHERE account_id = $1 AND name = $2")
                            .bind(account.to_string())
                            .bind(name)
                            .execute(&self.pool)
                            .await?;
                    Ok(done.rows_affected() > 0)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::IdempotencyStore for $store {
                async fn get_idempotent(
                    &self,
                    partner: Uuid,
                    key: &str,
                    since: i64,
                ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
                    let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
                        "SELECT body_hash, response FROM idempotency \
                     WHERE partner_id = $1 AND idem_key = $2 AND created_at >= $3",
                    )
                    .bind(partner.to_string())
                    .bind(key)
                    .bind(since)
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row)
                }

                async fn put_idempotent(
                    &self,
                    partner: Uuid,
                    key: &str,
                    body_hash: &[u8],
                    sealed: &[u8],
                    now: i64,
                    expire_before: i64,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
                        .bind(expire_before)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(UPSERT_IDEMPOTENT)
                        .bind(partner.to_string())
                        .bind(key)
                        .bind(body_hash)
                        .bind(sealed)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use row_stores;
