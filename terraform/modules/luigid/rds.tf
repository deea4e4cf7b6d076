# Optional task history (luigid's [task_history], shown at /history): PostgreSQL on RDS,
# enabled by var.task_history_db.enabled. RDS keeps the master password in Secrets Manager
# itself (never in Terraform state); luigid's execution role injects that secret and the
# image's entrypoint turns it into [task_history] db_connection.

resource "aws_security_group" "db" {
  count = local.db ? 1 : 0

  name        = "${var.name}-luigid-db"
  description = "${var.name}: PostgreSQL holding the luigid task history"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-luigid-db" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_luigid" {
  count = local.db ? 1 : 0

  security_group_id            = aws_security_group.db[0].id
  description                  = "PostgreSQL from luigid tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.luigid.id
}

resource "aws_vpc_security_group_egress_rule" "luigid_to_db" {
  count = local.db ? 1 : 0

  security_group_id            = aws_security_group.luigid.id
  description                  = "PostgreSQL task history"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db[0].id
}

resource "aws_db_subnet_group" "this" {
  count = local.db ? 1 : 0

  name       = "${var.name}-luigid"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_db_parameter_group" "this" {
  count = local.db ? 1 : 0

  name   = "${var.name}-luigid-pg${split(".", var.task_history_db.engine_version)[0]}"
  family = "postgres${split(".", var.task_history_db.engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.db ? 1 : 0

  name               = "${var.name}-luigid-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.db ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  count = local.db ? 1 : 0

  identifier                          = "${var.name}-luigid"
  engine                              = "postgres"
  engine_version                      = var.task_history_db.engine_version
  instance_class                      = var.task_history_db.instance_class
  allocated_storage                   = var.task_history_db.allocated_storage_gib
  max_allocated_storage               = var.task_history_db.allocated_storage_gib * 5
  storage_type                        = "gp3"
  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  db_name                             = "luigid"
  username                            = "luigid"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = var.kms_key_arn
  iam_database_authentication_enabled = true
  multi_az                            = var.task_history_db.multi_az
  db_subnet_group_name                = aws_db_subnet_group.this[0].name
  vpc_security_group_ids              = [aws_security_group.db[0].id]
  parameter_group_name                = aws_db_parameter_group.this[0].name
  publicly_accessible                 = false
  ca_cert_identifier                  = "rds-ca-rsa2048-g1"
  auto_minor_version_upgrade          = true
  backup_retention_period             = var.task_history_db.backup_retention_days
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.task_history_db.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-luigid-final"
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring[0].arn
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = var.kms_key_arn
  apply_immediately                   = false
  tags                                = var.tags

  depends_on = [aws_cloudwatch_log_group.db]
}

# luigid's execution role may read (only) this database's RDS-managed secret.
data "aws_iam_policy_document" "db_secret" {
  count = local.db ? 1 : 0

  statement {
    sid       = "InjectTaskHistorySecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.this[0].master_user_secret[0].secret_arn]
  }
  statement {
    sid       = "DecryptTaskHistorySecret"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "db_secret" {
  count = local.db ? 1 : 0

  name   = "${var.name}-luigid-task-history-secret"
  role   = var.execution_role_name
  policy = data.aws_iam_policy_document.db_secret[0].json
}

# Created here (before the instance exports to them) so they get a retention and the key.
resource "aws_cloudwatch_log_group" "db" {
  for_each = local.db ? toset(["postgresql", "upgrade"]) : toset([])

  name              = "/aws/rds/instance/${var.name}-luigid/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
  tags              = var.tags
}
