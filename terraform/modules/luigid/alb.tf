# The internal, authenticating front door of the luigid UI: HTTPS only (HTTP redirects),
# every request authenticated by OIDC or Cognito before it is forwarded to luigid.
# The ALB needs outbound HTTPS to the identity provider (through NAT).

resource "aws_security_group" "alb" {
  name        = "${var.name}-luigid-alb"
  description = "${var.name}: internal ALB in front of luigid"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-luigid-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = { for pair in setproduct(var.ui_cidrs, [80, 443]) : "${pair[0]}:${pair[1]}" => pair }

  security_group_id = aws_security_group.alb.id
  description       = "luigid UI from the allowed networks (${each.value[1] == 80 ? "redirected to HTTPS" : "HTTPS"})"
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  cidr_ipv4         = each.value[0]
}

resource "aws_vpc_security_group_egress_rule" "alb_to_luigid" {
  security_group_id            = aws_security_group.alb.id
  description                  = "forward authenticated requests to luigid"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.luigid.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_idp" {
  security_group_id = aws_security_group.alb.id
  description       = "token and user-info endpoints of the identity provider"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.egress_cidr
}

resource "aws_lb" "this" {
  name                       = "${var.name}-luigid"
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  access_logs {
    bucket  = var.access_logs_bucket
    prefix  = "alb"
    enabled = true
  }

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:luigid serves plain HTTP only; TLS ends at this internal ALB and the hop to the task stays inside the VPC, limited by security groups to the ALB.
  name                 = "${var.name}-luigid"
  port                 = var.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/static/visualiser/index.html"
    matcher             = "200"
    interval            = 30
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

data "aws_secretsmanager_secret_version" "oidc_client_secret" {
  count     = var.auth.oidc == null ? 0 : 1
  secret_id = var.auth.oidc.client_secret_arn
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type  = var.auth.oidc == null ? "authenticate-cognito" : "authenticate-oidc"
    order = 1

    dynamic "authenticate_oidc" {
      for_each = var.auth.oidc == null ? [] : [var.auth.oidc]
      content {
        issuer                 = authenticate_oidc.value.issuer
        authorization_endpoint = authenticate_oidc.value.authorization_endpoint
        token_endpoint         = authenticate_oidc.value.token_endpoint
        user_info_endpoint     = authenticate_oidc.value.user_info_endpoint
        client_id              = authenticate_oidc.value.client_id
        client_secret          = data.aws_secretsmanager_secret_version.oidc_client_secret[0].secret_string
        scope                  = "openid email"
        session_timeout        = var.auth_session_seconds
      }
    }

    dynamic "authenticate_cognito" {
      for_each = var.auth.cognito == null ? [] : [var.auth.cognito]
      content {
        user_pool_arn       = authenticate_cognito.value.user_pool_arn
        user_pool_client_id = authenticate_cognito.value.user_pool_client_id
        user_pool_domain    = authenticate_cognito.value.user_pool_domain
        scope               = "openid email"
        session_timeout     = var.auth_session_seconds
      }
    }
  }

  default_action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.this.arn
  }
}

resource "aws_route53_record" "ui" {
  count = var.route53_zone_id == null ? 0 : 1

  zone_id = var.route53_zone_id
  name    = var.ui_hostname
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
