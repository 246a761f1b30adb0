locals {
  name  = "nclav"
  azs   = slice(data.aws_availability_zones.available.names, 0, 2)
  image = "${aws_ecr_repository.nclav.repository_url}:${var.image_tag}"
  # RDS enforces TLS (rds.force_ssl); `require` encrypts without shipping the RDS CA bundle.
  db_url = "postgres://nclav:${urlencode(random_password.db.result)}@${aws_db_instance.state.address}:${aws_db_instance.state.port}/nclav?sslmode=require"
  https  = var.certificate_arn != ""
  # What clients and agents call: the name the certificate covers when there is one (see api_url).
  api_url = var.api_url != "" ? var.api_url : "${local.https ? "https" : "http"}://${aws_lb.api.dns_name}"

  agents = var.agent_count > 0
  # Agents reach the API the way clients do, through the ALB's public address, so a request
  # arrives from the agent's public IP: a security-group reference cannot admit it (those
  # match private addresses inside the VPC only), and Fargate gives each task a public IP
  # nobody knows in advance. While the ALB admits everyone, agents sit in the public subnets
  # like the API tasks; once allowed_cidrs narrows it, they go to private subnets behind a
  # NAT gateway whose fixed address the ALB then admits.
  agent_nat = local.agents && !contains(var.allowed_cidrs, "0.0.0.0/0")
  alb_cidrs = concat(var.allowed_cidrs, local.agent_nat ? ["${aws_eip.agents[0].public_ip}/32"] : [])
  agent_args = concat(
    ["agent", "--parallelism", tostring(var.agent_parallelism)],
    var.agent_pool != "" ? ["--labels", "pool=${var.agent_pool}"] : [],
  )
  # The token agents hold; the server is given only <id>:<sha256 of the secret part>, which
  # it registers in the database at start (`nclav agent-token hash` prints the same).
  agent_token        = local.agents ? "nclav-agent.${random_id.agent_token_id[0].hex}.${random_id.agent_token_secret[0].hex}" : ""
  agent_registration = local.agents ? "${random_id.agent_token_id[0].hex}:${sha256(random_id.agent_token_secret[0].hex)}" : ""
}

# Phase 1 (targeted by `make bootstrap-aws` before the image push): the registry.
resource "aws_ecr_repository" "nclav" {
  name                 = "nclav"
  image_tag_mutability = "MUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
}

# Network: public subnets for the ALB and the tasks (public IPs reach AWS APIs without a NAT
# gateway), private subnets for the database.
resource "aws_vpc" "nclav" {
  cidr_block           = var.vpc_cidr
  enable_dns_hostnames = true
  enable_dns_support   = true
  tags                 = { Name = local.name }
}

resource "aws_internet_gateway" "nclav" {
  vpc_id = aws_vpc.nclav.id
}

resource "aws_subnet" "public" {
  count                   = 2
  vpc_id                  = aws_vpc.nclav.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = true
  tags                    = { Name = "${local.name}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.nclav.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 10 + count.index)
  tags              = { Name = "${local.name}-private-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.nclav.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.nclav.id
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "nclav API load balancer"
  vpc_id      = aws_vpc.nclav.id

  ingress {
    description = "HTTP"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = local.alb_cidrs
  }

  ingress {
    description = "HTTPS"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = local.alb_cidrs
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "tasks" {
  name        = "${local.name}-tasks"
  description = "nclav API tasks"
  vpc_id      = aws_vpc.nclav.id

  ingress {
    description     = "API from the load balancer"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "db" {
  name        = "${local.name}-db"
  description = "nclav state database"
  vpc_id      = aws_vpc.nclav.id

  ingress {
    description     = "PostgreSQL from the API tasks"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.tasks.id]
  }
}

# State database: RDS for PostgreSQL 16.
resource "random_password" "db" {
  length  = 32
  special = false
}

resource "random_string" "suffix" {
  length  = 6
  special = false
  upper   = false
}

resource "aws_db_subnet_group" "nclav" {
  name       = "${local.name}-db"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "nclav" {
  name   = "${local.name}-pg16"
  family = "postgres16"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
}

resource "aws_db_instance" "state" {
  identifier                = "nclav-state-${random_string.suffix.result}"
  engine                    = "postgres"
  engine_version            = "16"
  instance_class            = var.db_instance_class
  allocated_storage         = 20
  max_allocated_storage     = 100
  storage_encrypted         = true
  db_name                   = "nclav"
  username                  = "nclav"
  password                  = random_password.db.result
  db_subnet_group_name      = aws_db_subnet_group.nclav.name
  parameter_group_name      = aws_db_parameter_group.nclav.name
  vpc_security_group_ids    = [aws_security_group.db.id]
  publicly_accessible       = false
  backup_retention_period   = 14
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = !var.deletion_protection
  final_snapshot_identifier = var.deletion_protection ? "nclav-state-${random_string.suffix.result}-final" : null
}

# Secrets: only Secrets Manager holds the token and the database URL.
resource "random_bytes" "api_token" {
  length = 32
}

resource "aws_secretsmanager_secret" "api_token" {
  name = "nclav-api-token"
}

resource "aws_secretsmanager_secret_version" "api_token" {
  secret_id     = aws_secretsmanager_secret.api_token.id
  secret_string = random_bytes.api_token.hex
}

resource "aws_secretsmanager_secret" "db_url" {
  name = "nclav-db-url"
}

resource "aws_secretsmanager_secret_version" "db_url" {
  secret_id     = aws_secretsmanager_secret.db_url.id
  secret_string = local.db_url
}

# Identities: the execution role starts the task (image, secrets, logs); the task role is the
# server's own identity for account vending.
data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "nclav-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    actions = ["secretsmanager:GetSecretValue"]
    resources = concat(
      [aws_secretsmanager_secret.api_token.arn, aws_secretsmanager_secret.db_url.arn],
      aws_secretsmanager_secret.agent_token[*].arn,
    )
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "nclav-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

resource "aws_iam_role" "server" {
  name               = "nclav-server"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
}

data "aws_iam_policy_document" "server" {
  statement {
    sid = "AccountVending"
    actions = [
      "organizations:CreateAccount",
      "organizations:DescribeCreateAccountStatus",
      "organizations:DescribeAccount",
      "organizations:DescribeOrganization",
      "organizations:ListAccounts",
      "organizations:ListParents",
      "organizations:MoveAccount",
      "organizations:TagResource",
      "organizations:ListTagsForResource",
      "organizations:CloseAccount",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "IntoEnclaveAccounts"
    actions   = ["sts:AssumeRole", "sts:TagSession"]
    resources = ["arn:${data.aws_partition.current.partition}:iam::*:role/${var.cross_account_role}"]
  }

  statement {
    sid       = "Orphans"
    actions   = ["tag:GetResources"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "server" {
  name   = "nclav-server"
  role   = aws_iam_role.server.id
  policy = data.aws_iam_policy_document.server.json
}

# The API: ECS Fargate behind an ALB.
resource "aws_cloudwatch_log_group" "nclav" {
  name              = "/ecs/nclav-api"
  retention_in_days = 30
}

resource "aws_ecs_cluster" "nclav" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_task_definition" "api" {
  family                   = "nclav-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.server.arn

  container_definitions = jsonencode([{
    name      = "nclav"
    image     = local.image
    essential = true
    # With agents the server runs no terraform itself: runs become jobs for the agent service.
    command = concat(
      ["serve", "--bind", "0.0.0.0", "--port", "8080", "--cloud", var.default_cloud],
      local.agents ? ["--agents-only"] : [],
    )
    portMappings = [{
      containerPort = 8080
      protocol      = "tcp"
    }]
    secrets = [
      { name = "NCLAV_TOKEN", valueFrom = aws_secretsmanager_secret.api_token.arn },
      { name = "NCLAV_POSTGRES_URL", valueFrom = aws_secretsmanager_secret.db_url.arn },
    ]
    environment = concat([
      { name = "NCLAV_AWS_ORG_UNIT_ID", value = var.org_unit_id },
      { name = "NCLAV_AWS_EMAIL_DOMAIN", value = var.email_domain },
      { name = "NCLAV_AWS_DEFAULT_REGION", value = var.region },
      { name = "NCLAV_AWS_ACCOUNT_PREFIX", value = var.account_prefix },
      { name = "NCLAV_AWS_CROSS_ACCOUNT_ROLE", value = var.cross_account_role },
      ],
      # A hash, not a secret: it lets the server recognise the agents' token.
      local.agents ? [{ name = "NCLAV_AGENT_TOKEN_HASHES", value = local.agent_registration }] : [],
    )
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS http://localhost:8080/health || exit 1"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.nclav.name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "nclav"
      }
    }
  }])
}

resource "aws_lb" "api" {
  name                       = "nclav-api"
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  idle_timeout               = 3600
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
}

resource "aws_lb_target_group" "api" {
  name        = "nclav-api"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = aws_vpc.nclav.id

  health_check {
    path                = "/ready"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.api.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.api.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

resource "aws_ecs_service" "api" {
  name                              = "nclav-api"
  cluster                           = aws_ecs_cluster.nclav.id
  task_definition                   = aws_ecs_task_definition.api.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 60

  network_configuration {
    subnets          = aws_subnet.public[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = true
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "nclav"
    container_port   = 8080
  }

  depends_on = [aws_lb_listener.http]
}

# Agents (agent_count > 0): `nclav agent` tasks that claim the server's runs over the API and
# run terraform; the server (`--agents-only`) then runs none itself.
resource "random_id" "agent_token_secret" {
  count       = local.agents ? 1 : 0
  byte_length = 32
}

resource "random_id" "agent_token_id" {
  count       = local.agents ? 1 : 0
  byte_length = 6
  # The server registers a token's hash once per id and never overwrites it, so a new secret
  # needs a new id: `-replace` of the secret replaces both.
  keepers = {
    secret = sha256(random_id.agent_token_secret[0].hex)
  }
}

resource "aws_secretsmanager_secret" "agent_token" {
  count = local.agents ? 1 : 0
  name  = "nclav-agent-token"
  # Deleted at once when agent_count goes back to 0: a secret waiting out a recovery window
  # keeps its name, and agents turned on again would fail to create it.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "agent_token" {
  count         = local.agents ? 1 : 0
  secret_id     = aws_secretsmanager_secret.agent_token[0].id
  secret_string = local.agent_token
}

# Only when allowed_cidrs is narrowed (local.agent_nat): private subnets whose traffic leaves
# through one NAT gateway, so the ALB can admit the agents by its address. One gateway, in the
# first zone: if that zone fails, agents in the other lose their way out until it is back.
resource "aws_eip" "agents" {
  count  = local.agent_nat ? 1 : 0
  domain = "vpc"
  tags   = { Name = "${local.name}-agents" }
}

resource "aws_nat_gateway" "agents" {
  count         = local.agent_nat ? 1 : 0
  allocation_id = aws_eip.agents[0].id
  subnet_id     = aws_subnet.public[0].id
  tags          = { Name = "${local.name}-agents" }
  depends_on    = [aws_internet_gateway.nclav]
}

resource "aws_subnet" "agents" {
  count             = local.agent_nat ? 2 : 0
  vpc_id            = aws_vpc.nclav.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 20 + count.index)
  tags              = { Name = "${local.name}-agents-${count.index}" }
}

resource "aws_route_table" "agents" {
  count  = local.agent_nat ? 1 : 0
  vpc_id = aws_vpc.nclav.id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.agents[0].id
  }
}

resource "aws_route_table_association" "agents" {
  count          = local.agent_nat ? 2 : 0
  subnet_id      = aws_subnet.agents[count.index].id
  route_table_id = aws_route_table.agents[0].id
}

# Agents accept no connections: they only call out (the API, ECR, Secrets Manager, CloudWatch
# Logs, provider downloads, and the clouds they provision).
resource "aws_security_group" "agents" {
  count       = local.agents ? 1 : 0
  name        = "${local.name}-agents"
  description = "nclav agents (outbound only)"
  vpc_id      = aws_vpc.nclav.id

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_cloudwatch_log_group" "agents" {
  count             = local.agents ? 1 : 0
  name              = "/ecs/nclav-agents"
  retention_in_days = 30
}

# No task role: terraform on an agent never acts as the agent. Each job carries the partition's
# credentials, which the server's driver gets by assuming the partition's role, and the agent
# runs terraform with every AWS_ variable replaced by those (container credentials and
# instance metadata cut off). A task role would go unused and only widen what a compromised
# agent could do. The execution role starts the task: image, the token secret, logs.
resource "aws_ecs_task_definition" "agents" {
  count                    = local.agents ? 1 : 0
  family                   = "nclav-agent"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.agent_cpu
  memory                   = var.agent_memory
  execution_role_arn       = aws_iam_role.execution.arn

  # No healthCheck: an agent serves no port (ECS ignores the image's HEALTHCHECK).
  container_definitions = jsonencode([{
    name      = "nclav-agent"
    image     = local.image
    essential = true
    command   = local.agent_args
    # SIGTERM interrupts running terraform (SIGINT, then SIGKILL after the server's
    # --run-grace-period, 60 s by default) and reports it: Fargate's longest stop wait.
    stopTimeout = 120
    # The version this apply wrote (<arn>:<json key>:<stage>:<version id>): a new token makes a
    # new task definition, so the agents roll over to it by themselves.
    secrets = [
      { name = "NCLAV_AGENT_TOKEN", valueFrom = "${aws_secretsmanager_secret.agent_token[0].arn}:::${aws_secretsmanager_secret_version.agent_token[0].version_id}" },
    ]
    environment = [
      { name = "NCLAV_URL", value = local.api_url },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.agents[0].name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "nclav-agent"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = var.agent_memory >= 2 * var.agent_cpu && var.agent_memory <= 8 * var.agent_cpu
      error_message = "agent_memory must be between 2 and 8 times agent_cpu (MiB per CPU unit) for Fargate, e.g. 1024 CPU with 2048-8192 MiB."
    }
  }
}

resource "aws_ecs_service" "agents" {
  count           = local.agents ? 1 : 0
  name            = "nclav-agents"
  cluster         = aws_ecs_cluster.nclav.id
  task_definition = aws_ecs_task_definition.agents[0].arn
  desired_count   = var.agent_count
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = local.agent_nat ? aws_subnet.agents[*].id : aws_subnet.public[*].id
    security_groups  = [aws_security_group.agents[0].id]
    assign_public_ip = !local.agent_nat
  }

  lifecycle {
    precondition {
      condition     = !local.https || startswith(var.api_url, "https://")
      error_message = "With certificate_arn set, agents must call the API at a name the certificate covers: set api_url to https://<that name> (a DNS record pointing at the load balancer), not the load balancer's own DNS name."
    }
  }

  depends_on = [aws_secretsmanager_secret_version.agent_token, aws_route_table_association.agents]
}
